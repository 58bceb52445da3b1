"""Deep-learning engines: one module per weight format, one interface.

``load_engine(weights)`` returns an :class:`Engine`: a callable that takes a batch of
tiles laid out in the model's own input axes (e.g. ``byxc``) and returns the model's
first output in its own output axes. Engines are cached, so a model is loaded once per
process and reused across calls (see :func:`load_engine`).

Heavy libraries (tensorflow, onnxruntime, torch) are imported inside the module that
needs them, on first use.
"""

from __future__ import annotations

import threading
from pathlib import Path

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.errors import EngineError

__all__ = ["Engine", "load_engine", "clear_cache"]

_CACHE: dict[tuple[str, str, str | None, str | None], Engine] = {}
_LOCK = threading.Lock()


def _create(weights: WeightsSpec) -> Engine:
    fmt = weights.format
    if fmt == "tensorflow_saved_model_bundle":
        from deepimagej.engines.tensorflow import SavedModelEngine

        return SavedModelEngine(weights)
    if fmt == "keras_hdf5":
        from deepimagej.engines.keras import KerasEngine

        return KerasEngine(weights)
    if fmt == "onnx":
        from deepimagej.engines.onnx import OnnxEngine

        return OnnxEngine(weights)
    if fmt == "torchscript":
        from deepimagej.engines.torchscript import TorchScriptEngine

        return TorchScriptEngine(weights)
    raise EngineError(
        f"weights format '{fmt}' cannot be run by deepimagej; "
        "use tensorflow_saved_model_bundle, keras_hdf5, onnx or torchscript weights"
    )


def load_engine(weights: WeightsSpec) -> Engine:
    """Load (or reuse) the engine for a weights entry.

    Args:
        weights: a weights entry whose ``path`` exists on disk.

    Returns:
        The engine; the same object for the same file, format and tensor names.

    Raises:
        EngineError: the format is not runnable or the model cannot be loaded.
    """
    if weights.path is None:
        raise EngineError(f"weights '{weights.format}' point to {weights.source}: download it next to the descriptor")
    key = (str(Path(weights.path).resolve()), weights.format, weights.signature, ",".join(weights.output_names))
    with _LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            engine = _create(weights)
            _CACHE[key] = engine
        return engine


def clear_cache() -> None:
    """Forget every loaded engine (frees their memory once unreferenced)."""
    with _LOCK:
        _CACHE.clear()
