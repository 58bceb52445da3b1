"""What a Keras model file would do, read from its configuration before Keras deserializes it.

A Keras model is data except for two things: ``Lambda`` layers (and serialized Python
functions, ``__lambda__``), whose bytecode runs when the model is loaded or called, and
custom objects (classes outside Keras), which need Python code the bundle cannot bring and
which, registered by someone else, would run it. ``TFSMLayer`` loads another SavedModel from
a path written in the file. The configuration JSON is read from the ``.h5`` attributes or the
``.keras`` zip without deserializing anything; Keras 3's ``safe_mode`` is the second line.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from deepimagej.archive import read_member
from deepimagej.audit.findings import Finding
from deepimagej.errors import BundleError, first_line

#: Largest configuration JSON read.
MAX_CONFIG_BYTES = 64 * 2**20
#: Serialization markers of Keras 3 configs (not classes).
_MARKERS = {
    "__tuple__",
    "__keras_tensor__",
    "__numpy__",
    "__bytes__",
    "__typespec__",
    "__tensor__",
    "__ellipsis__",
}
#: Model classes whose names are not attributes of ``keras.layers`` & co.
_MODEL_CLASSES = {"Functional", "Model", "Sequential", "TensorShape"}
_KERAS_MODULES = (
    "layers",
    "initializers",
    "regularizers",
    "constraints",
    "activations",
    "dtype_policies",
    "optimizers",
    "losses",
    "metrics",
    "models",
)
_REFUSED_CLASSES = {
    "Lambda": "runs Python code stored in the model file (a Lambda layer)",
    "__lambda__": "runs Python code stored in the model file (a serialized Python function)",
    "TFSMLayer": "loads another TensorFlow SavedModel from a path written in the file",
}


def audit_keras(path: Path, *, source: str) -> list[Finding]:
    """Audit a Keras ``.h5``/``.hdf5``/``.keras`` file from its configuration, without loading it.

    Raises:
        BundleError: the file is not a Keras model file.
    """
    config = _read_config(Path(path))
    if config is None:  # weights only: nothing to deserialize, loading will say what is missing
        return []
    found: dict[tuple[str, str], list[str]] = {}
    _walk(config, "model", found, depth=0)
    return [
        Finding(
            source,
            what,
            f"{why}: {len(layers)} x ({', '.join(layers[:3])}{' ...' if len(layers) > 3 else ''})",
        )
        for (what, why), layers in sorted(found.items())
    ]


def _read_config(path: Path) -> Any:
    text: bytes | str | None
    if path.suffix.lower() == ".keras":
        text = read_member(path, "config.json", MAX_CONFIG_BYTES)
    else:
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                text = h5.attrs.get("model_config")
        except OSError as exc:
            raise BundleError(f"{path}: not a Keras HDF5 file ({first_line(exc)})") from None
        if text is None:
            return None
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if len(text) > MAX_CONFIG_BYTES:
            raise BundleError(f"{path}: model configuration larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{path}: unreadable Keras model configuration ({first_line(exc)})") from None


def _walk(value: Any, name: str, found: dict[tuple[str, str], list[str]], depth: int) -> None:
    if depth > 200:
        found.setdefault(("nesting", "a configuration nested more than 200 levels deep"), []).append(name)
        return
    if isinstance(value, list):
        for item in value:
            _walk(item, name, found, depth + 1)
        return
    if not isinstance(value, dict):
        return
    class_name = value.get("class_name")
    config = value.get("config")
    if isinstance(config, dict) and isinstance(config.get("name"), str):
        name = config["name"]
    if isinstance(class_name, str):
        why = _verdict(class_name, value.get("module"), value.get("registered_name"))
        if why is not None:
            found.setdefault((class_name, why), []).append(name)
            return  # what it holds is its own business: one finding per refused object
    for key, item in value.items():
        if key != "class_name":
            _walk(item, name, found, depth + 1)


def _verdict(class_name: str, module: Any, registered: Any) -> str | None:
    """Why a serialized object is refused, or ``None`` when it is a plain Keras object."""
    if class_name in _REFUSED_CLASSES:
        return _REFUSED_CLASSES[class_name]
    custom = "is a custom object (code from outside Keras that the bundle cannot bring)"
    if isinstance(registered, str) and ">" in registered:
        return custom
    if isinstance(module, str):
        return (
            None if module == "keras" or module.startswith(("keras.", "tensorflow.", "tf_keras")) else custom
        )
    if class_name in _MARKERS or class_name in _MODEL_CLASSES or _is_keras_class(class_name):
        return None
    return custom


@functools.lru_cache(maxsize=512)
def _is_keras_class(name: str) -> bool:
    from deepimagej.engines.tensorflow import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return any(hasattr(getattr(keras, module, None), name) for module in _KERAS_MODULES)
