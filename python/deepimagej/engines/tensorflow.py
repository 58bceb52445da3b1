"""TensorFlow SavedModel engine (TF2 and TF1 graphs), called through its signature.

The bundle may hold the SavedModel as a folder (``saved_model.pb`` + ``variables/``) or
as DeepImageJ's ``tensorflow_saved_model_bundle.zip``; a zip is unpacked once into the
user cache (``~/.cache/deepimagej``), never next to the user's files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.errors import EngineError, first_line

#: DeepImageJ 1.x configs spell tags and signature keys as Java constants.
_TAG_ALIASES = {"tf.saved_model.tag_constants.SERVING": "serve", "serving": "serve"}
_SIGNATURE_ALIASES = {
    "tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY": "serving_default",
}


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (must run before the first import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cache_dir() -> Path:
    """Folder where deepimagej unpacks zipped weights."""
    root = os.environ.get("DEEPIMAGEJ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deepimagej"
    )
    return Path(root)


def _unpack_zip(path: Path) -> Path:
    digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "saved_models" / digest[:16]
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
    except zipfile.BadZipFile:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EngineError(f"{path}: not a valid zip file; re-export the SavedModel") from None
    (tmp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def saved_model_dir(path: Path) -> Path:
    """Resolve a weights path (folder, ``saved_model.pb`` or zip) to a SavedModel folder."""
    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        path = _unpack_zip(path)
    elif path.is_file() and path.name == "saved_model.pb":
        path = path.parent
    if (path / "saved_model.pb").exists():
        return path
    found = sorted(path.rglob("saved_model.pb")) if path.is_dir() else []
    if not found:
        raise EngineError(f"{path}: no saved_model.pb found; the weights must be a TensorFlow SavedModel")
    return found[0].parent


_PLUMBING_OPS = {
    "Identity", "Const", "NoOp", "Placeholder", "ReadVariableOp", "StatefulPartitionedCall",
    "PartitionedCall", "Shape", "StridedSlice", "Pack", "VarHandleOp",
}


class SavedModelEngine(Engine):
    """Calls a SavedModel's signature (``serving_default`` unless the bundle names another)."""

    runtime = "tensorflow"

    def __init__(self, weights: WeightsSpec):
        super().__init__(weights)
        quiet_tensorflow()
        import tensorflow as tf

        folder = saved_model_dir(Path(weights.path))
        tag = _TAG_ALIASES.get(weights.tag or "serve", weights.tag or "serve")
        try:
            self._loaded = tf.saved_model.load(str(folder), tags=[tag])
        except Exception as exc:  # TF raises many kinds; the user needs one line
            msg = first_line(exc)
            raise EngineError(f"{folder}: cannot load SavedModel with tag '{tag}' ({msg})") from None
        key = _SIGNATURE_ALIASES.get(weights.signature or "", weights.signature) or "serving_default"
        signatures = dict(self._loaded.signatures)
        if key not in signatures and len(signatures) == 1:
            key = next(iter(signatures))
        if key in signatures:
            self._init_signature(folder, key, signatures[key], weights)
        elif weights.input_names and weights.output_names and hasattr(self._loaded, "prune"):
            self._init_tensor_names(folder, weights)
        else:
            names = ", ".join(signatures) or "none"
            raise EngineError(
                f"{folder}: signature '{key}' not found (available: {names}) and the bundle gives no tensor names"
            )
        self._tf = tf

    def _init_signature(self, folder: Path, key: str, fn, weights: WeightsSpec) -> None:  # noqa: ANN001
        """TF2 (and TF1 with a signature_def): call the signature with its input key."""
        self.signature_key = key
        self._fn = fn
        inputs = fn.structured_input_signature[1]
        if len(inputs) != 1:
            raise EngineError(f"{folder}: signature '{key}' has {len(inputs)} inputs; deepimagej runs single-input models")
        self.input_name = next(iter(inputs))
        self.input_dtype = inputs[self.input_name].dtype.as_numpy_dtype
        outputs = list(fn.structured_outputs)
        wanted = [n for n in weights.output_names if n in outputs]
        self.output_name = wanted[0] if wanted else sorted(outputs)[0]
        self._by_name = False

    def _init_tensor_names(self, folder: Path, weights: WeightsSpec) -> None:
        """TF1 graph without a usable signature: feed and fetch the tensors the bundle names."""
        feed = weights.input_names[0] if ":" in weights.input_names[0] else weights.input_names[0] + ":0"
        fetch = weights.output_names[0] if ":" in weights.output_names[0] else weights.output_names[0] + ":0"
        try:
            self._fn = self._loaded.prune(feed, fetch)
        except (KeyError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0]
            raise EngineError(f"{folder}: tensors '{feed}' -> '{fetch}' not found in the graph ({msg})") from None
        self.signature_key = "(tensor names)"
        self.input_name, self.output_name = feed, fetch
        self.input_dtype = self._fn.inputs[0].dtype.as_numpy_dtype
        self._by_name = True

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = self._tf.constant(np.ascontiguousarray(batch, dtype=self.input_dtype))
        if self._by_name:
            return self._fn(x).numpy()
        return self._fn(**{self.input_name: x})[self.output_name].numpy()

    def describe(self) -> list[str]:
        graph_def = self._fn.graph.as_graph_def()
        ops = Counter(node.op for node in graph_def.node)
        for function in graph_def.library.function:  # the model body lives in called functions
            ops.update(node.op for node in function.node_def)
        interesting = {k: v for k, v in ops.items() if k not in _PLUMBING_OPS}
        lines = [f"signature '{self.signature_key}': input '{self.input_name}' -> output '{self.output_name}'"]
        lines += [f"  {n} x {op}" for op, n in sorted(interesting.items(), key=lambda kv: -kv[1])[:25]]
        return lines
