"""Deep-learning engines: one module per weight format, one interface.

``load_engine(weights, inputs, outputs)`` returns an :class:`Engine`: a callable that takes a
batch of every input tensor, each laid out in its own axes (e.g. ``byxc``), and returns every
output in its own axes (see :mod:`deepimagej.engines.base`). Engines are cached, so a model is
loaded once per process and reused across calls.

Heavy libraries (tensorflow, onnxruntime, torch) are imported inside the module that needs
them, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine, weights_file
from deepimagej.errors import EngineError

__all__ = ["Engine", "clear_cache", "load_engine"]

_CACHE: dict[tuple[str, str, str | None, tuple[str, ...], tuple[str, ...]], Engine] = {}
_LOCK = threading.Lock()


def _create(weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str], trust_code: bool) -> Engine:
    fmt = weights.format
    if fmt == "tensorflow_saved_model_bundle":
        from deepimagej.engines.tensorflow import SavedModelEngine

        return SavedModelEngine(weights, inputs, outputs)
    if fmt == "keras_hdf5":
        from deepimagej.engines.keras import KerasEngine

        return KerasEngine(weights, inputs, outputs, safe_mode=not trust_code)
    if fmt == "onnx":
        from deepimagej.engines.onnx import OnnxEngine

        return OnnxEngine(weights, inputs, outputs)
    if fmt == "torchscript":
        from deepimagej.engines.torchscript import TorchScriptEngine

        return TorchScriptEngine(weights, inputs, outputs)
    if fmt == "pytorch_state_dict":
        if not trust_code:
            raise EngineError(
                f"{weights.path.name if weights.path else weights.source}: pytorch_state_dict weights run the "
                "Python code shipped in the bundle; run only bundles you trust, with --trust (trust=True)"
            )
        from deepimagej.engines.torchscript import StateDictEngine

        return StateDictEngine(weights, inputs, outputs)
    raise EngineError(
        f"weights format '{fmt}' cannot be run by deepimagej; "
        "use tensorflow_saved_model_bundle, keras_hdf5, onnx, torchscript or pytorch_state_dict weights"
    )


def load_engine(
    weights: WeightsSpec,
    inputs: Sequence[str] = ("input",),
    outputs: Sequence[str] = ("output",),
    *,
    trust_code: bool = False,
) -> Engine:
    """Load (or reuse) the engine for a weights entry.

    Args:
        weights: a weights entry whose ``path`` exists on disk.
        inputs / outputs: the bundle's tensor names, in the descriptor's order (the names the
            engine's calls use).
        trust_code: allow weights that run Python code shipped in the bundle
            (``pytorch_state_dict``, Keras ``Lambda`` layers: Keras' ``safe_mode`` off). Callers check
            the bundle with :func:`deepimagej.audit.require_allowed` first.

    Returns:
        The engine; the same object for the same file, format and tensor names.

    Raises:
        EngineError: the format is not runnable, its code is not trusted, or the model cannot
            be loaded.
    """
    path = Path(weights_file(weights)).resolve()
    key = (str(path), weights.format, weights.signature, tuple(inputs), tuple(outputs))
    with _LOCK:
        engine = _CACHE.get(key)
        if engine is None:
            engine = _create(weights, inputs, outputs, trust_code)
            _CACHE[key] = engine
        return engine


def clear_cache() -> None:
    """Forget every loaded engine (frees their memory once unreferenced)."""
    with _LOCK:
        _CACHE.clear()
