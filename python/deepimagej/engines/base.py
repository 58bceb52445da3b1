"""The engine interface shared by every weight format."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from deepimagej.bundle.spec import WeightsSpec


class Engine(ABC):
    """A loaded model: ``engine(batch) -> output batch`` in the model's own axes."""

    #: Short name of the runtime, for ``info`` and logs.
    runtime: str = ""
    #: Batch size the model requires (e.g. an ONNX graph exported for batch 1); None if free.
    fixed_batch_size: int | None = None

    def __init__(self, weights: WeightsSpec):
        self.weights = weights

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on one batch (float32, model input axes); return the first output."""

    def describe(self) -> list[str]:
        """Human-readable summary of the model's layers or operations (one line each)."""
        return []
