"""TensorFlow SavedModel engine (TF2 and TF1 graphs), called through its signature.

The bundle may hold the SavedModel as a folder (``saved_model.pb`` + ``variables/``) or
as DeepImageJ's ``tensorflow_saved_model_bundle.zip``; a zip is unpacked once into the
user cache (``~/.cache/deepimagej``), never next to the user's files.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.archive import extract_zip
from deepimagej.bundle.formats import SAVED_MODEL_PB, tensorflow_signature, tensorflow_tag
from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine, thread_count
from deepimagej.errors import EngineError, first_line
from deepimagej.paths import cache_dir


def quiet_tensorflow() -> None:
    """Import TensorFlow once, without its start-up chatter, and with ``DEEPIMAGEJ_THREADS`` (set
    for Dask workers) applied before it starts its thread pools. Call it before importing
    ``tensorflow`` or ``keras``.

    TensorFlow 2.21's C++ libraries print ``WARNING: All log messages before
    absl::InitializeLog()...`` and the oneDNN notice straight to the process's stderr while they
    load, whatever ``TF_CPP_MIN_LOG_LEVEL`` says; so the import runs with file descriptor 2
    pointed at /dev/null (an import error is still raised, with its message, after it is restored).
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = thread_count()
    if threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow  # noqa: F401 - loaded here, silently, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _unpack_zip(path: Path) -> Path:
    digest = hashlib.sha256(
        f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()
    ).hexdigest()
    target = cache_dir() / "saved_models" / digest[:16]
    if not target.is_dir():
        extract_zip(path, target)  # checked (names, links, sizes) and atomic: a folder there is complete
    return target


def saved_model_dir(path: Path) -> Path:
    """Resolve a weights path (folder, ``saved_model.pb`` or zip) to a SavedModel folder."""
    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        path = _unpack_zip(path)
    elif path.is_file() and path.name == SAVED_MODEL_PB:
        path = path.parent
    if (path / SAVED_MODEL_PB).exists():
        return path
    found = sorted(path.rglob(SAVED_MODEL_PB)) if path.is_dir() else []
    if not found:
        raise EngineError(f"{path}: no saved_model.pb found; the weights must be a TensorFlow SavedModel")
    return found[0].parent


_PLUMBING_OPS = {
    "Identity",
    "Const",
    "NoOp",
    "Placeholder",
    "ReadVariableOp",
    "StatefulPartitionedCall",
    "PartitionedCall",
    "Shape",
    "StridedSlice",
    "Pack",
    "VarHandleOp",
}


class SavedModelEngine(Engine):
    """Calls a SavedModel's signature (``serving_default`` unless the bundle names another)."""

    runtime = "tensorflow"

    def __init__(self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str]):
        super().__init__(weights, inputs, outputs)
        quiet_tensorflow()
        import tensorflow as tf

        folder = saved_model_dir(self.path)
        tag = tensorflow_tag(weights.tag)
        try:
            self._loaded = tf.saved_model.load(str(folder), tags=[tag])
        except Exception as exc:  # noqa: BLE001 - TF raises many kinds; the user needs one line
            raise EngineError(
                f"{folder}: cannot load SavedModel with tag '{tag}' ({first_line(exc)})"
            ) from None
        key = tensorflow_signature(weights.signature)
        signatures = dict(self._loaded.signatures)
        if key not in signatures and len(signatures) == 1:
            key = next(iter(signatures))
        if key in signatures:
            self._init_signature(key, signatures[key])
        elif weights.input_names and weights.output_names and hasattr(self._loaded, "prune"):
            self._init_tensor_names(folder, weights)
        else:
            names = ", ".join(signatures) or "none"
            raise EngineError(
                f"{folder}: signature '{key}' not found (available: {names}) and the bundle gives no tensor names"
            )
        self._tf = tf

    def _init_signature(self, key: str, fn: Any) -> None:
        """TF2 (and TF1 with a signature_def): call the signature with its input keys."""
        self.signature_key = key
        self._fn = fn
        inputs = fn.structured_input_signature[1]
        self._feed = self.match("input", self.inputs, list(inputs))
        self._dtypes = {ours: inputs[theirs].dtype.as_numpy_dtype for ours, theirs in self._feed.items()}
        self._fetch = self.match("output", self.outputs, sorted(fn.structured_outputs))
        self._by_name = False

    def _init_tensor_names(self, folder: Path, weights: WeightsSpec) -> None:
        """TF1 graph without a usable signature: feed and fetch the tensors the bundle names."""
        feeds = [n if ":" in n else n + ":0" for n in weights.input_names]
        fetches = [n if ":" in n else n + ":0" for n in weights.output_names]
        try:
            self._fn = self._loaded.prune(feeds, fetches)
        except (KeyError, ValueError) as exc:
            raise EngineError(
                f"{folder}: tensors {', '.join(feeds)} -> {', '.join(fetches)} not found in the graph ({first_line(exc)})"
            ) from None
        self.signature_key = "(tensor names)"
        self._feed = dict(zip(self.inputs, feeds))
        self._fetch = dict(zip(self.outputs, fetches))
        self._dtypes = {ours: t.dtype.as_numpy_dtype for ours, t in zip(self.inputs, self._fn.inputs)}
        self._by_name = True

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        args = {
            ours: tf.constant(np.ascontiguousarray(batch[ours], dtype=self._dtypes[ours]))
            for ours in self._feed
        }
        try:
            if self._by_name:
                results = self._fn(*(args[ours] for ours in self.inputs))
                if not isinstance(results, (list, tuple)):
                    results = [results]
                return {name: r.numpy() for name, r in zip(self.outputs, results)}
            results = self._fn(**{self._feed[ours]: value for ours, value in args.items()})
        except Exception as exc:  # noqa: BLE001 - tf.errors.* with the graph's own message
            raise EngineError(f"{self.path.name}: the TensorFlow model failed ({first_line(exc)})") from None
        return {ours: results[theirs].numpy() for ours, theirs in self._fetch.items()}

    def describe(self) -> list[str]:
        graph_def = self._fn.graph.as_graph_def()
        ops = Counter(node.op for node in graph_def.node)
        for function in graph_def.library.function:  # the model body lives in called functions
            ops.update(node.op for node in function.node_def)
        interesting = {k: v for k, v in ops.items() if k not in _PLUMBING_OPS}
        feeds = ", ".join(f"'{v}'" for v in self._feed.values())
        fetches = ", ".join(f"'{v}'" for v in self._fetch.values())
        lines = [f"signature '{self.signature_key}': inputs {feeds} -> outputs {fetches}"]
        lines += [f"  {n} x {op}" for op, n in sorted(interesting.items(), key=lambda kv: -kv[1])[:25]]
        return lines
