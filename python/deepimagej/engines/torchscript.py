"""TorchScript engine (PyTorch CPU)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.errors import EngineError, first_line


class TorchScriptEngine(Engine):
    """Runs a TorchScript module in inference mode."""

    runtime = "torch"

    def __init__(self, weights: WeightsSpec):
        super().__init__(weights)
        try:
            import torch
        except ImportError:
            raise EngineError("torchscript weights need PyTorch: pip install 'deepimagej[torch]' (torch==2.13.0)") from None
        try:
            self.module = torch.jit.load(str(weights.path), map_location="cpu").eval()
        except Exception as exc:  # torch raises RuntimeError with multi-line C++ traces
            msg = first_line(exc)
            raise EngineError(f"{weights.path}: cannot load TorchScript model ({msg})") from None
        self._torch = torch

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.numpy()

    def describe(self) -> list[str]:
        kinds = Counter(type(m).__name__ if not hasattr(m, "original_name") else m.original_name for m in self.module.modules())
        return [f"  {n} x {k}" for k, n in kinds.most_common(25)]
