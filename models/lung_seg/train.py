"""Train the lung_seg bundle's 3D UNet on CPU, reproducibly (fixed seed, 2 threads).

Data (read from $COVIDCT_SAMPLES, default ../shared/data relative to the repository root):
  - TCIA Lung-PET-CT-Dx A0001 (2 kernels) and A0002 (2 kernels), classical silver masks;
  - CIP TestInput.nrrd (low-res chest CT), classical silver mask;
  - TotalSegmentator example_ct_sm.nii.gz with its lung-lobe masks (lung bases);
  - synthetic chest phantoms (covidct_core.phantom) with exact masks and augmentation.
Held out (never trained on): LIDC-IDRI-0001 and CIP ct-64 (with its wholeLung-64 mask).

Usage:
  nice -n 10 python models/lung_seg/train.py            # train, export models/model.ts
  python models/lung_seg/train.py --evaluate-only       # Dice report of the exported bundle

The preprocessing (orientation, 2 mm resampling, HU window) is the library's own, so training
sees exactly what inference sees.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from covidct_core.phantom import make_chest_phantom, random_phantom_options
from covidct_core.volume_io import Volume, read_reference_image, read_reference_series
from covidct_segment.classical import dice, segment_lungs_classical
from covidct_segment.preprocess import Preprocessing, model_grid, resample_hu, resample_mask_to_grid

BUNDLE = Path(__file__).resolve().parent
REPO = BUNDLE.parent.parent
PREP = Preprocessing()
PATCH = 64
PAD_HU = -1000.0
TCIA = "tcia-lung-pet-ct-dx"
LIDC = "lidc-idri-0001"


@dataclass
class Case:
    name: str
    hu: np.ndarray  # int16, canonical, 2 mm grid
    label: np.ndarray  # uint8
    weight: float
    lung_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    hard_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    air_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))

    def __post_init__(self) -> None:
        step = 3
        lung = self.label[::step, ::step, ::step] > 0
        air = (self.hu[::step, ::step, ::step] < -500) & ~lung
        box = (
            tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(lung))
            if lung.any()
            else tuple(slice(0, n) for n in lung.shape)
        )
        near = np.zeros_like(air)
        near[box] = air[box]
        self.lung_points = np.argwhere(lung) * step
        self.hard_points = np.argwhere(near) * step
        self.air_points = np.argwhere(air) * step


def samples_dir() -> Path:
    return Path(os.environ.get("COVIDCT_SAMPLES", str(REPO.parent / "shared" / "data")))


def tcia_series(root: Path) -> list[Path]:
    return sorted((root / TCIA).glob("Lung_Dx-*/*/*"))


def lidc_series(root: Path) -> list[Path]:
    return sorted((root / LIDC / "LIDC-IDRI-0001").glob("*/*"))


def to_case(name: str, volume: Volume, mask: np.ndarray, weight: float) -> Case:
    grid = model_grid(volume, PREP)
    hu = resample_hu(volume, grid)[0, 0].round().clamp(-1024, 3071).to(torch.int16).numpy()
    label = resample_mask_to_grid(mask, grid)
    return Case(name, hu, label, weight)


def real_cases(root: Path) -> list[Case]:
    cases = []
    for series in tcia_series(root):
        volume = read_reference_series(series)
        silver = segment_lungs_classical(volume).mask
        cases.append(to_case(series.parent.parent.name + "/" + series.name, volume, silver, 1.0))
    cip = read_reference_image(root / "cip-copdgene-testdata" / "TestInput.nrrd")
    cases.append(to_case("cip/TestInput", cip, segment_lungs_classical(cip).mask, 1.0))
    ts = root / "totalsegmentator-testdata"
    small = read_reference_image(ts / "example_ct_sm.nii.gz")
    lobes = np.zeros(small.array.shape, dtype=np.uint8)
    for path in sorted((ts / "example_seg_fast_lungs").glob("lung_*.nii.gz")):
        lobes |= (sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0).astype(np.uint8)
    cases.append(to_case("totalseg/example_ct_sm", small, lobes, 0.5))
    return cases


def phantom_cases(count: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        options = random_phantom_options(rng)
        inplane = max(1.2, options.spacing[0])
        zs = max(2.0, options.spacing[2])
        options = replace(
            options, spacing=(inplane, inplane, zs), fov_mm=min(options.fov_mm, 440.0)
        )
        phantom = make_chest_phantom(seed * 1000 + index, options)
        cases.append(to_case(f"phantom/{index}", phantom.volume, phantom.lung_mask, 1.0))
    return cases


def crop(array: np.ndarray, center: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full((size, size, size), fill, dtype=array.dtype)
    start = center - size // 2
    src = [slice(max(0, s), min(n, s + size)) for s, n in zip(start, array.shape, strict=True)]
    dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, start, strict=True)]
    out[tuple(dst)] = array[tuple(src)]
    return out


def sample_center(case: Case, rng: np.random.Generator) -> np.ndarray:
    """Half on lung, a fifth on air that is not lung (trachea, gas and outside air next to
    the chest, or any air outside the body: the hard negatives), the rest anywhere."""
    draw = rng.random()
    if draw < 0.5 and len(case.lung_points):
        return case.lung_points[rng.integers(len(case.lung_points))]
    if draw < 0.62 and len(case.hard_points):
        return case.hard_points[rng.integers(len(case.hard_points))]
    if draw < 0.7 and len(case.air_points):
        return case.air_points[rng.integers(len(case.air_points))]
    return np.array([rng.integers(n) for n in case.hu.shape])


def lung_gamma(hu: torch.Tensor, gamma: float) -> torch.Tensor:
    """Darker (emphysema-like) or denser lungs: a power curve on [-1000, -500] HU only."""
    low = (hu >= -1000) & (hu < -500)
    curved = -1000 + 500 * ((hu + 1000) / 500).clamp(0, 1) ** gamma
    return torch.where(low, curved, hu)


def sample_patch(case: Case, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    scale = float(rng.uniform(0.75, 1.25))
    size = max(16, round(PATCH * scale))
    center = sample_center(case, rng)
    hu = torch.from_numpy(crop(case.hu, center, size, PAD_HU).astype(np.float32))
    label = torch.from_numpy(crop(case.label, center, size, 0).astype(np.float32))
    if size != PATCH:
        hu = F.interpolate(hu[None, None], size=(PATCH,) * 3, mode="trilinear")[0, 0]
        label = F.interpolate(label[None, None], size=(PATCH,) * 3, mode="nearest-exact")[0, 0]
    if rng.random() < 0.5:
        hu = lung_gamma(hu, float(np.exp(rng.uniform(np.log(0.7), np.log(1.6)))))
    hu = hu * float(rng.uniform(0.95, 1.05)) + float(rng.uniform(-30, 30))
    if rng.random() < 0.3:
        factor = int(rng.integers(2, 4))
        coarse = F.avg_pool3d(hu[None, None], (1, factor, factor), ceil_mode=True)
        hu = F.interpolate(coarse, size=(PATCH,) * 3, mode="trilinear")[0, 0]
    if rng.random() < 0.3:
        hu = hu + torch.from_numpy(rng.normal(0, rng.uniform(5, 25), hu.shape).astype(np.float32))
    if rng.random() < 0.5:
        hu, label = hu.flip(-1), label.flip(-1)
    image = ((hu - PREP.hu_min) / (PREP.hu_max - PREP.hu_min)).clamp(0, 1)
    return image[None], label[None].long()


def build_network() -> UNet:
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm="BATCH",
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    root = samples_dir()
    real = real_cases(root)
    print(f"real cases ready: {[c.name for c in real]} ({time.perf_counter() - started:.0f}s)")
    phantoms = phantom_cases(args.phantoms, args.seed)
    print(f"{len(phantoms)} phantoms ready ({time.perf_counter() - started:.0f}s)", flush=True)
    net = build_network()
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    real_weights = np.array([c.weight for c in real]) / sum(c.weight for c in real)
    net.train()
    freeze_at = int(args.iterations * args.freeze_fraction)
    for step in range(args.iterations):
        if step == freeze_at:
            recalibrate_batchnorm(net, real + phantoms, rng)
            freeze_batchnorm(net)
            print(f"step {step}: BatchNorm statistics recalibrated and frozen", flush=True)
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.iterations))
        for group in optimizer.param_groups:
            group["lr"] = max(lr, 1e-5)
        patches = []
        for _ in range(args.batch):
            if rng.random() < args.real_fraction:
                case = real[int(rng.choice(len(real), p=real_weights))]
            else:
                case = phantoms[int(rng.integers(len(phantoms)))]
            patches.append(sample_patch(case, rng))
        images = torch.stack([p[0] for p in patches])
        labels = torch.stack([p[1] for p in patches])
        optimizer.zero_grad()
        loss = loss_fn(net(images), labels)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == args.iterations - 1:
            elapsed = time.perf_counter() - started
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} t {elapsed:.0f}s", flush=True)
    export(net, args, time.perf_counter() - started)


def freeze_batchnorm(net: UNet) -> None:
    """Use the running statistics from now on (affine parameters keep training).

    Batch statistics of 2 patches differ a lot from patch to patch (all air vs all lung); a
    network trained only with them does worse with the fixed statistics used at inference.
    Training the last part with frozen statistics tunes the weights to exactly the
    inference-time behaviour, which is also independent of the sliding-window size."""
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def recalibrate_batchnorm(net: UNet, cases: list[Case], rng: np.random.Generator) -> None:
    """Re-estimate BatchNorm running statistics with the current weights (no gradients)."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(60):
            batch = [sample_patch(cases[int(rng.integers(len(cases)))], rng) for _ in range(2)]
            net(torch.stack([p[0] for p in batch]))
    net.eval()


def export(net: UNet, args: argparse.Namespace, seconds: float) -> None:
    net.eval()
    scripted = torch.jit.script(net.half())
    path = args.output / "models" / "model.ts"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    meta_path = args.output / "configs" / "metadata.json"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    metadata["weights"] = {
        "file": "models/model.ts",
        "format": "torchscript",
        "dtype": "float16",
        "sha256": digest,
    }
    metadata["training"] = {
        "seed": args.seed,
        "iterations": args.iterations,
        "batch": args.batch,
        "patch": PATCH,
        "threads": args.threads,
        "phantoms": args.phantoms,
        "real_fraction": args.real_fraction,
        "batchnorm_frozen_from_step": int(args.iterations * args.freeze_fraction),
        "lr": args.lr,
        "seconds": round(seconds),
        "torch": torch.__version__,
    }
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"exported {path} sha256 {digest} after {seconds:.0f}s", flush=True)


def evaluate(bundle_dir: Path) -> None:
    """Dice of the exported bundle against the references on the original grids."""
    from covidct_segment.bundle import load_bundle
    from covidct_segment.inference import InferenceSettings, segment_volume

    torch.set_num_threads(2)
    loaded = load_bundle(str(bundle_dir))
    settings = InferenceSettings.from_metadata(loaded.metadata)
    root = samples_dir()
    report: dict[str, dict[str, float]] = {}

    def score(name: str, volume: Volume, reference: np.ndarray) -> None:
        started = time.perf_counter()
        mask = segment_volume(loaded.model, volume, settings, torch.device("cpu")).mask
        voxel_ml = float(np.prod(volume.spacing)) / 1000
        report[name] = {
            "dice": round(dice(mask, reference), 4),
            "lung_ml": round(float(mask.sum()) * voxel_ml),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, report[name], flush=True)

    for series in lidc_series(root) + tcia_series(root):
        volume = read_reference_series(series)
        score(
            series.parent.parent.name + "/" + series.name[:40],
            volume,
            segment_lungs_classical(volume).mask,
        )
    cip = root / "cip-copdgene-testdata"
    score(
        "cip/ct-64 vs wholeLung-64",
        read_reference_image(cip / "ct-64.nrrd"),
        sitk.GetArrayFromImage(sitk.ReadImage(str(cip / "wholeLung-64.nrrd"))),
    )
    for seed in (9001, 9002, 9003):
        phantom = make_chest_phantom(seed, random_phantom_options(np.random.default_rng(seed)))
        score(f"phantom/{seed} vs ground truth", phantom.volume, phantom.lung_mask)
    out = bundle_dir / "docs" / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def ensure_hash_seed() -> None:
    """TorchScript writes some module attributes in set order, which follows Python's string
    hash seed: fix it (by re-executing once) so that model.ts is byte-identical between runs."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])  # noqa: S606


def main() -> None:
    ensure_hash_seed()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--iterations", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--phantoms", type=int, default=28)
    parser.add_argument("--real-fraction", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--freeze-fraction", type=float, default=0.5)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument(
        "--output", type=Path, default=BUNDLE, help="bundle folder to write (default: this one)"
    )
    args = parser.parse_args()
    if not args.evaluate_only:
        train(args)
    if not args.no_evaluate:
        evaluate(args.output)


if __name__ == "__main__":
    main()
