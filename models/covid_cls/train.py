"""Train the reference covid_cls bundle on synthetic COVID-19-like findings.

No COVID-labelled CT exists here. Positives are bilateral, peripheral, lower-lobe
predominant GGO / crazy paving / consolidation painted into real lungs (TCIA
Lung-PET-CT-Dx, LIDC-IDRI-0001; masks from the classical segmenter) and into chest
phantoms; negatives are the same lungs unchanged or with confounders (emphysema, nodule,
dependent density, basal atelectasis). See covidct_classify.synthetic.

Held out: patient Lung_Dx-A0002 (both series) and phantom seeds not used for training.
Held-out cases are painted at full resolution and go through the pipeline's own
preprocessing, and they are scored with the exported (fp16-stored) TorchScript file.

Two phases on the same DenseNet121: 96x96x32 inputs (cheap, lesions >= 3 %), then the real
192x192x64 inputs (lesions >= 1 %). Lesions are painted on the cropped classifier grid.

Run from the repository root (about 25 minutes on 2 idle CPU cores):
    nice -n 10 .venv/bin/python models/covid_cls/train.py
Writes models/covid_cls/models/model.ts, configs/metadata.json and docs/training_report.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.networks.nets import DenseNet121

from covidct_classify.bundle_format import (
    METADATA_FILE,
    WEIGHTS_FILE,
    classifier_metadata,
    write_classifier_bundle,
)
from covidct_classify.classifier import CovidClassifier
from covidct_classify.evaluation import phantom_lungs, roc_auc
from covidct_classify.lung_geometry import LungGeometry, lung_geometry
from covidct_classify.preprocess import PreprocessConfig, crop_and_resize, network_input, preprocess
from covidct_classify.synthetic import random_case_spec, synthesize, synthesize_volume
from covidct_core.messages import ModelRef
from covidct_core.volume_io import Volume, read_reference_series

BUNDLE = Path(__file__).resolve().parent
NAME, VERSION = "covid_cls", "1.0.0"
TRAIN_SERIES = (
    "tcia-lung-pet-ct-dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/2.000000-5mm-40805",
    "tcia-lung-pet-ct-dx/Lung_Dx-A0001/04-04-2007-NA-Chest-07990/3.000000-5mm-41315",
    "lidc-idri-0001/LIDC-IDRI-0001/1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178/"
    "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192",
)
HELD_OUT_SERIES = (
    "tcia-lung-pet-ct-dx/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834/"
    "2.000000-ThoraxRoutine  8.0.0  B70f-62919",
    "tcia-lung-pet-ct-dx/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834/"
    "3.000000-ThoraxRoutine  8.0.0  B40f-10983",
)
TRAIN_PHANTOM_SEEDS = tuple(range(100, 108))
HELD_OUT_PHANTOM_SEEDS = (900, 901, 902)
LOW_SIZE = (96, 96, 32)


@dataclass
class Base:
    """A normal lung on a classifier grid (z, y, x), ready for painting."""

    name: str
    hu: np.ndarray
    mask: np.ndarray
    geometry: LungGeometry


@dataclass(frozen=True)
class Phase:
    """One training phase: input size, batch, steps, learning rate, smallest lesion."""

    config: PreprocessConfig
    steps: int
    batch: int
    max_lr: float
    min_fraction: float


def samples_dir() -> Path:
    default = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return Path(os.environ.get("COVIDCT_SAMPLES", default))


def read_clipped_series(folder: Path) -> Volume:
    """The series in HU clipped to [-1024, 3071] (the committed weights were trained so)."""
    volume = read_reference_series(folder)
    return dataclasses.replace(volume, array=np.clip(volume.array, -1024, 3071).astype(np.int16))


def load_cases(
    series: Sequence[str], phantom_seeds: Sequence[int]
) -> list[tuple[str, Volume, np.ndarray]]:
    """(name, volume, lung mask) of real series (classical masks) and phantoms, in order."""
    cases = []
    for relative in series:
        volume = read_clipped_series(samples_dir() / relative)
        cases.append((Path(relative).name, volume, classical_mask(volume)))
    for seed in phantom_seeds:
        volume, mask = phantom_lungs(seed)
        cases.append((f"phantom-{seed}", volume, mask))
    return cases


def classical_mask(volume: Volume) -> np.ndarray:
    from covidct_segment.classical import segment_lungs_classical

    return np.asarray(segment_lungs_classical(volume).mask) > 0


def make_base(name: str, volume: Volume, mask: np.ndarray, config: PreprocessConfig) -> Base:
    cropped = crop_and_resize(volume.array, mask, volume.spacing, config)
    lungs = cropped.mask > 0.5
    geometry = lung_geometry(lungs, cropped.spacing, volume.direction)
    return Base(name, cropped.hu, lungs, geometry)


def training_sample(base: Base, covid: bool, rng: np.random.Generator, phase: Phase) -> np.ndarray:
    spec = random_case_spec(rng, covid, phase.min_fraction)
    painted, _ = synthesize(base.hu, base.geometry, spec, rng)
    painted = painted * float(rng.uniform(0.97, 1.03)) + float(rng.uniform(-20, 20))
    painted = painted + rng.normal(0.0, float(rng.uniform(0, 15)), painted.shape)
    sample = network_input(painted, base.mask, phase.config)
    if rng.random() < 0.5:
        sample = sample[:, ::-1].copy()
    return sample


def run_phase(
    net: torch.nn.Module, bases: list[Base], phase: Phase, rng: np.random.Generator, log: Any
) -> None:
    optimiser = torch.optim.AdamW(net.parameters(), lr=phase.max_lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=phase.max_lr, total_steps=phase.steps, pct_start=0.15
    )
    real = [b for b in bases if not b.name.startswith("phantom")]
    phantoms = [b for b in bases if b.name.startswith("phantom")]
    net.train()
    recent: list[float] = []
    started = time.monotonic()
    for step in range(phase.steps):
        labels = [i % 2 for i in range(phase.batch)]
        samples = []
        for label in labels:
            pool = real if rng.random() < 0.5 else phantoms
            base = pool[int(rng.integers(len(pool)))]
            samples.append(training_sample(base, bool(label), rng, phase))
        x = torch.from_numpy(np.stack(samples)).to(memory_format=torch.channels_last_3d)
        y = torch.tensor(labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        recent = [*recent[-9:], float((logits.argmax(1) == y).float().mean())]
        log(
            size=list(phase.config.spatial_size),
            step=step,
            loss=round(float(loss.detach()), 4),
            acc10=round(float(np.mean(recent)), 3),
            seconds=round(time.monotonic() - started, 1),
        )


def train(
    bases: dict[str, list[Base]], phases: list[Phase], seed: int, in_channels: int, log: Any
) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=2)
    net = net.to(memory_format=torch.channels_last_3d)
    for phase in phases:
        run_phase(net, bases[phase_key(phase)], phase, rng, log)
    return net.to(memory_format=torch.contiguous_format).eval()


def phase_key(phase: Phase) -> str:
    return "x".join(str(v) for v in phase.config.spatial_size)


def evaluate_held_out(
    classifier: CovidClassifier,
    cases: list[tuple[str, Volume, np.ndarray]],
    per_case: int,
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rows = []
    for name, volume, mask in cases:
        for i in range(per_case):
            spec = random_case_spec(rng, covid=i % 2 == 0)
            hu, _ = synthesize_volume(
                volume.array, mask, volume.spacing, spec, rng, volume.direction
            )
            batch = preprocess(hu, mask, volume.spacing, classifier.config)[None]
            probability = float(classifier.scores(batch)[0, 1])
            rows.append(
                {
                    "source": name,
                    "covid": spec.covid,
                    "fraction": spec.fraction,
                    "confounders": [c.kind for c in spec.confounders],
                    "probability_covid19": round(probability, 5),
                }
            )
    return {"cases": rows, **summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def auc(selected: list[dict[str, Any]]) -> float | None:
        labels = [r["covid"] for r in selected]
        if all(labels) or not any(labels):
            return None
        return round(roc_auc(labels, [r["probability_covid19"] for r in selected]), 4)

    negatives = [r for r in rows if not r["covid"]]
    small = [r for r in rows if r["covid"] and r["fraction"] < 0.05] + negatives
    large = [r for r in rows if r["covid"] and r["fraction"] >= 0.05] + negatives
    real = [r for r in rows if not r["source"].startswith("phantom")]
    phantom = [r for r in rows if r["source"].startswith("phantom")]
    accuracy = np.mean([(r["probability_covid19"] >= 0.5) == r["covid"] for r in rows])
    return {
        "auc": auc(rows),
        "auc_real": auc(real),
        "auc_phantom": auc(phantom),
        "auc_lesions_under_5pct": auc(small),
        "auc_lesions_5pct_or_more": auc(large),
        "accuracy_at_0.5": round(float(accuracy), 4),
        "n": len(rows),
    }


def model_card_fields(report: dict[str, Any]) -> dict[str, Any]:
    held = report["held_out"]
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "description": "MONAI DenseNet121 (3D) on the lung bounding box, Clara-compatible input",
        "authors": "covidct contributors",
        "copyright": "Apache-2.0",
        "intended_use": "RESEARCH USE ONLY. Trained on synthetic findings, not clinically "
        "validated; it exists so the pipeline runs end to end. Research conclusions need a "
        "real model trained on labelled COVID-19 CT.",
        "data_source": "Synthetic COVID-19-like findings painted into TCIA Lung-PET-CT-Dx "
        "(CC BY 4.0) and LIDC-IDRI-0001 (CC BY 3.0) lungs and into chest phantoms",
        "data_type": "int16 HU volume + binary lung mask",
        "label_classes": "0 = non-COVID-19, 1 = COVID-19",
        "pred_classes": "softmax over [non-COVID-19, COVID-19]",
        "performance": {
            "held_out_auc": held["auc"],
            "held_out_auc_real_lungs": held["auc_real"],
            "held_out_auc_phantoms": held["auc_phantom"],
            "held_out_auc_lesions_under_5pct": held["auc_lesions_under_5pct"],
            "held_out_cases": held["n"],
            "note": "synthetic findings on held-out lungs (patient Lung_Dx-A0002, phantom "
            "seeds " + ", ".join(str(s) for s in HELD_OUT_PHANTOM_SEEDS) + "); not a clinical "
            "metric",
        },
        "training": {k: v for k, v in report.items() if k != "held_out"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--low-steps", type=int, default=140)
    parser.add_argument("--low-batch", type=int, default=8)
    parser.add_argument("--full-steps", type=int, default=36)
    parser.add_argument("--full-batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BUNDLE)
    parser.add_argument("--eval-per-case", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()

    def log(**fields: Any) -> None:
        print(json.dumps({"t": round(time.monotonic() - started, 1), **fields}), flush=True)

    config = PreprocessConfig()
    phases = [
        Phase(
            dataclasses.replace(config, spatial_size=LOW_SIZE),
            args.low_steps,
            args.low_batch,
            1e-3,
            0.03,
        ),
        Phase(config, args.full_steps, args.full_batch, 3e-4, 0.01),
    ]
    sources = load_cases(TRAIN_SERIES, TRAIN_PHANTOM_SEEDS)
    bases = {
        phase_key(phase): [make_base(n, v, m, phase.config) for n, v, m in sources]
        for phase in phases
    }
    held_cases = load_cases(HELD_OUT_SERIES, HELD_OUT_PHANTOM_SEEDS)
    log(event="data_ready", bases=len(sources), held_out=len(held_cases))

    net = train(bases, phases, args.seed, config.in_channels, log)
    train_seconds = time.monotonic() - started
    changelog = {VERSION: "reference weights trained on synthetic findings only"}
    written = write_classifier_bundle(
        args.out, net, NAME, VERSION, config, half=True, changelog=changelog
    )
    sha256 = written["weights"]["sha256"]
    model_path = args.out / WEIGHTS_FILE
    log(event="exported", sha256=sha256, bytes=model_path.stat().st_size)

    loaded = torch.jit.load(str(model_path), map_location="cpu")
    classifier = CovidClassifier(loaded, written, ModelRef(NAME, VERSION, sha256))
    held_out = evaluate_held_out(classifier, held_cases, args.eval_per_case, args.seed + 1)
    log(event="held_out", **{k: v for k, v in held_out.items() if k != "cases"})
    report = {
        "held_out": held_out,
        "train_series": [Path(s).name for s in TRAIN_SERIES],
        "train_phantom_seeds": list(TRAIN_PHANTOM_SEEDS),
        "held_out_series": [Path(s).name for s in HELD_OUT_SERIES],
        "held_out_phantom_seeds": list(HELD_OUT_PHANTOM_SEEDS),
        "phases": [
            {
                "spatial_size": list(p.config.spatial_size),
                "steps": p.steps,
                "batch": p.batch,
                "max_lr": p.max_lr,
                "min_fraction": p.min_fraction,
            }
            for p in phases
        ],
        "seed": args.seed,
        "threads": args.threads,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.monotonic() - started, 1),
        "weights_bytes": model_path.stat().st_size,
        "weights_sha256": sha256,
    }
    meta = classifier_metadata(
        NAME, VERSION, config, sha256, "float16", changelog, **model_card_fields(report)
    )
    (args.out / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "docs").mkdir(parents=True, exist_ok=True)
    (args.out / "docs" / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(event="done", **{k: v for k, v in report.items() if k != "held_out"})


if __name__ == "__main__":
    main()
