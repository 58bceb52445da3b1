"""The engine interface shared by every weight format.

An engine is a loaded model called on a batch of every input tensor at once:
``engine({"raw": batch, "mask": batch}) -> {"out0": batch, "out1": batch}``. Tensors are named
as in the bundle; each batch is laid out in that tensor's own axes (e.g. ``byxc``). The engine
maps the bundle's names onto the runtime's own inputs and outputs: by name where they agree,
else by position (the descriptor lists tensors in the model's order).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.errors import EngineError


def thread_count() -> int | None:
    """Threads a runtime may use (``DEEPIMAGEJ_THREADS``: set for Dask workers), or ``None`` for its default."""
    value = os.environ.get("DEEPIMAGEJ_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def weights_file(weights: WeightsSpec) -> Path:
    """The local file (or folder) of a weights entry.

    Raises:
        EngineError: the entry points to a URL that was not downloaded.
    """
    if weights.path is None:
        raise EngineError(
            f"weights '{weights.format}' point to {weights.source}: download it next to the descriptor"
        )
    return weights.path


class Engine(ABC):
    """A loaded model: ``engine({input name: batch}) -> {output name: batch}`` in the model's own axes.

    Attributes:
        weights: the weights entry it was loaded from.
        path: its local file (or folder).
        inputs / outputs: the bundle's tensor names, in the descriptor's order.
    """

    #: Short name of the runtime, for ``info`` and logs.
    runtime: str = ""
    #: Batch size the model requires (e.g. an ONNX graph exported for batch 1); None if free.
    fixed_batch_size: int | None = None
    #: Resident memory of the process once the model was loaded and before its first run (set by
    #: the first run): memory above it that earlier calls left is the runtime's reusable pool.
    resident_bytes: int | None = None

    def __init__(self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str]):
        self.weights = weights
        self.path = weights_file(weights)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)

    @abstractmethod
    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on one batch of every input; return every output."""

    def describe(self) -> list[str]:
        """Human-readable summary of the model's layers or operations (one line each)."""
        return []

    def match(self, kind: str, ours: Sequence[str], theirs: Sequence[str]) -> dict[str, str]:
        """Map the bundle's tensor names onto the runtime's: by name when the sets agree, else by position.

        Raises:
            EngineError: the model has fewer tensors than the bundle describes.
        """
        if set(ours) <= set(theirs):
            return {name: name for name in ours}
        if len(theirs) < len(ours):
            raise EngineError(
                f"{self.weights.path}: the model has {len(theirs)} {kind}(s) ({', '.join(theirs)}) but the bundle "
                f"describes {len(ours)} ({', '.join(ours)})"
            )
        return dict(zip(ours, theirs))
