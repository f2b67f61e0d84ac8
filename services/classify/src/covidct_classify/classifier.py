"""The COVID-19 classifier: a loaded bundle network plus its preprocessing contract.

Any TorchScript network that takes ``(B, C, X, Y, Z)`` with the bundle's channel count and
spatial size and returns ``(B, 2)`` scores for ``[non-COVID-19, COVID-19]`` works, e.g. a
Clara-style MONAI DenseNet121 with ``in_channels`` 1 or 2. The bundle metadata says whether
the outputs are logits (``"activation": "softmax"``: softmax is applied here) or already
probabilities (``"activation": "none"``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from covidct_classify.preprocess import PreprocessConfig, preprocess
from covidct_core.errors import ModelLoadError
from covidct_core.messages import ModelRef

CLASS_NAMES = ("non-COVID-19", "COVID-19")


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one series (they sum to 1)."""

    probability_covid19: float
    probability_non_covid19: float


def output_activation(metadata: dict[str, Any]) -> str:
    """``softmax`` (network returns logits) or ``none`` (network returns probabilities)."""
    pred = metadata["network_data_format"]["outputs"]["pred"]
    activation = str(pred.get("activation", "softmax")).lower()
    if activation not in ("softmax", "none"):
        raise ModelLoadError(f"unsupported output activation {activation!r}")
    channels = int(pred.get("num_channels", 2))
    if channels != 2:
        raise ModelLoadError(f"classifier must have 2 output classes, bundle says {channels}")
    return activation


class CovidClassifier:
    """Preprocess a volume + lung mask, run the network, return probabilities."""

    def __init__(
        self,
        network: torch.nn.Module,
        metadata: dict[str, Any],
        model: ModelRef,
        device: torch.device | str = "cpu",
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        if self.device.type == "cpu" and _has_half_weights(self.network):
            self.network = self.network.float()
        self.metadata = metadata
        self.model = model
        self.config = PreprocessConfig.from_metadata(metadata)
        self.activation = output_activation(metadata)
        self.autocast_dtype = autocast_dtype

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def scores(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Probabilities ``(B, 2)`` for preprocessed inputs ``(B, C, X, Y, Z)``."""
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode(), self._autocast():
            out = self.network(tensor)
        out = out.float()
        if out.ndim != 2 or out.shape[1] != 2:
            raise ModelLoadError(f"classifier returned shape {tuple(out.shape)}, expected (B, 2)")
        if self.activation == "softmax":
            out = torch.softmax(out, dim=1)
        probabilities: npt.NDArray[np.float64] = out.cpu().double().numpy()
        total = probabilities.sum(axis=1, keepdims=True)
        normalised: npt.NDArray[np.float64] = probabilities / total
        return normalised

    def predict(
        self,
        hu: npt.NDArray[Any],
        mask: npt.NDArray[Any],
        spacing: tuple[float, float, float],
    ) -> Prediction:
        """Classify one ``(z, y, x)`` HU volume with its lung mask."""
        batch = preprocess(hu, mask, spacing, self.config)[None]
        probability = self.scores(batch)[0]
        covid = float(probability[1])
        return Prediction(probability_covid19=covid, probability_non_covid19=1.0 - covid)


def _has_half_weights(network: torch.nn.Module) -> bool:
    return any(p.dtype == torch.float16 for p in network.parameters())


NetworkFactory = Callable[[], torch.nn.Module]
