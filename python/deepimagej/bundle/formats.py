"""Weight formats: their names, the other names people and older descriptors use, and TensorFlow's keys.

The one table of weight-format names. Every front door resolves a name here: the bioimage.io
reader (a ``weights:`` key of an rdf.yaml, :func:`descriptor_weight_format`), the checks before a
run and the Python API / CLI (``weights_format=``, :func:`normalize_format`) and the ImageJ
commands (DeepImageJ's ``format=Tensorflow|Pytorch|ONNX|Keras``, :func:`normalize_format`).

The canonical names are bioimage.io's (model spec 0.4 / 0.5). Aliases:

- ``pytorch_script`` is the spec 0.3 name of ``torchscript`` (renamed in 0.4); the 0.3 bundles
  DeepImageJ 2.x exported use it.
- ``pytorch`` and ``torch`` mean ``torchscript`` when a *user* types them: DeepImageJ's Run
  dialog and macros record ``format=Pytorch``, which DeepImageJ runs through DJL, and DJL loads
  TorchScript only (a state dict cannot run without the network's Python code). In a
  *descriptor* they are refused (:data:`AMBIGUOUS_IN_DESCRIPTORS`): a weights entry called
  ``pytorch`` may hold a TorchScript file or a state dict, no bioimage.io version ever used the
  name, and loading a file as the wrong one fails with an unreadable PyTorch error.
- ``tensorflow``/``tf``/``saved_model``/``tensorflow_saved_model`` mean
  ``tensorflow_saved_model_bundle`` (what DeepImageJ's ``format=Tensorflow`` runs);
  ``keras``/``h5`` mean ``keras_hdf5``.
"""

from __future__ import annotations

from pathlib import Path

from deepimagej.bundle.axes import field_error

#: Weight formats known to deepimagej (bioimage.io names), in the order tried when the caller names none.
WEIGHT_FORMATS = (
    "tensorflow_saved_model_bundle",
    "keras_hdf5",
    "onnx",
    "torchscript",
    "pytorch_state_dict",
    "tensorflow_js",
)
#: Formats deepimagej can execute (``pytorch_state_dict`` only for a bundle whose code the user
#: trusts: it imports the architecture's Python source from the bundle).
RUNNABLE_WEIGHT_FORMATS = (
    "tensorflow_saved_model_bundle",
    "keras_hdf5",
    "onnx",
    "torchscript",
    "pytorch_state_dict",
)
#: Other names of weight formats -> the bioimage.io name (see the module docstring for why each).
FORMAT_ALIASES = {
    "pytorch_script": "torchscript",
    "pytorch": "torchscript",
    "torch": "torchscript",
    "tensorflow": "tensorflow_saved_model_bundle",
    "tf": "tensorflow_saved_model_bundle",
    "saved_model": "tensorflow_saved_model_bundle",
    "tensorflow_saved_model": "tensorflow_saved_model_bundle",
    "keras": "keras_hdf5",
    "h5": "keras_hdf5",
}
#: Aliases that a user may type but a descriptor may not use as a ``weights`` key, with the
#: formats they could mean.
AMBIGUOUS_IN_DESCRIPTORS = {
    "pytorch": ("torchscript", "pytorch_state_dict"),
    "torch": ("torchscript", "pytorch_state_dict"),
}
#: The descriptor field that records the framework version of each format.
VERSION_FIELDS = {
    "tensorflow_saved_model_bundle": "tensorflow_version",
    "keras_hdf5": "tensorflow_version",
    "tensorflow_js": "tensorflow_version",
    "onnx": "opset_version",
    "torchscript": "pytorch_version",
    "pytorch_state_dict": "pytorch_version",
}
#: The file a SavedModel folder is zipped into inside a bundle (DeepImageJ and bioimage.io).
SAVED_MODEL_ZIP = "tensorflow_saved_model_bundle.zip"
#: The graph file that makes a folder a TensorFlow SavedModel.
SAVED_MODEL_PB = "saved_model.pb"

#: The SavedModel tag and signature TensorFlow uses by default.
TF_DEFAULT_TAG = "serve"
TF_DEFAULT_SIGNATURE = "serving_default"
#: DeepImageJ writes the Java constants' names for the tag and signature (config.xml
#: ``ModelTag``/``SignatureDefinition``, rdf ``config.deepimagej.model_keys``).
TF_TAG_CONSTANT = "tf.saved_model.tag_constants.SERVING"
TF_SIGNATURE_CONSTANT = "tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY"
#: Names of the SavedModel tag found in descriptors -> TensorFlow's value.
TF_TAG_ALIASES = {TF_TAG_CONSTANT: TF_DEFAULT_TAG, "SERVING": TF_DEFAULT_TAG, "serving": TF_DEFAULT_TAG}
#: Names of the signature key found in descriptors -> TensorFlow's value.
TF_SIGNATURE_ALIASES = {
    TF_SIGNATURE_CONSTANT: TF_DEFAULT_SIGNATURE,
    "DEFAULT_SERVING_SIGNATURE_DEF_KEY": TF_DEFAULT_SIGNATURE,
}


def normalize_format(name: str) -> str:
    """A weight-format name as a user types it -> the bioimage.io name.

    Case, surrounding spaces and inner spaces (``"Tensorflow saved model"``) do not matter;
    a name that is neither a format nor an alias comes back lower-cased, for the caller to refuse
    with the formats it has.

    >>> normalize_format("Pytorch"), normalize_format("tensorflow"), normalize_format("onnx")
    ('torchscript', 'tensorflow_saved_model_bundle', 'onnx')
    """
    key = "_".join(name.strip().lower().split())
    return FORMAT_ALIASES.get(key, key)


def descriptor_weight_format(key: str, *, source: Path | str = "rdf.yaml") -> str:
    """A ``weights`` key of a descriptor -> the bioimage.io name.

    Raises:
        BundleError: an ambiguous name (:data:`AMBIGUOUS_IN_DESCRIPTORS`), one line naming the
            file, the field and the names to use instead.
    """
    name = str(key).strip()
    if name.lower() in AMBIGUOUS_IN_DESCRIPTORS:
        choices = AMBIGUOUS_IN_DESCRIPTORS[name.lower()]
        raise field_error(
            source,
            f"weights.{name}",
            f"named by its format: rename it to {' or '.join(choices)}, whichever its file is "
            f"('{name}' may mean either)",
            show_got=False,
        )
    return FORMAT_ALIASES.get(name, name)


def tensorflow_tag(value: str | None) -> str:
    """The SavedModel tag TensorFlow wants for a descriptor's value (``None``: the default ``serve``)."""
    return TF_TAG_ALIASES.get(value, value) if value else TF_DEFAULT_TAG


def tensorflow_signature(value: str | None) -> str:
    """The signature key TensorFlow wants for a descriptor's value (``None``: ``serving_default``)."""
    return TF_SIGNATURE_ALIASES.get(value, value) if value else TF_DEFAULT_SIGNATURE
