"""Build the corpus' shared materials from code: hostile TF/Keras/TorchScript bundles, bombs, images.

Everything is made at test time in a temporary folder (no binary blob is committed):

- ``inputs/``: files every case may read and none may change (hashed around each case): a
  copy of the repository's pancreatic U-Net bundle and a few images.
- ``models/<name>/``: one bundle per hostile model (``rdf.yaml`` + weights). Hostile models write
  their "proof" into ``pwned/<name>.*``: the case that runs one untrusted checks the file is
  absent, then runs it with ``--trust`` and sees it appear.
- ``cache/``: the shared XDG cache of the case processes (unpacked weights, audits).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import tifffile

from hostile.case import REPO

RDF_2D = """\
format_version: 0.4.10
type: model
name: {name}
description: hostile test model {name}
inputs:
- name: input
  axes: {axes}
  data_type: float32
  shape: {{min: {mins}, step: {steps}}}
outputs:
- name: output
  axes: {axes}
  data_type: float32
  shape: {{reference_tensor: input, scale: [1, 1, 1, 1], offset: [0, 0, 0, 0]}}
weights:
  {fmt}:
    source: ./{weights}
"""


def write_rdf(folder: Path, name: str, fmt: str, weights: str, channels_first: bool = False) -> None:
    """A bioimage.io 0.4 descriptor for a one-input, one-output 2D model."""
    axes, mins, steps = (
        ("bcyx", "[1, 1, 8, 8]", "[0, 0, 8, 8]")
        if channels_first
        else ("byxc", "[1, 8, 8, 1]", "[0, 8, 8, 0]")
    )
    (folder / "rdf.yaml").write_text(
        RDF_2D.format(name=name, axes=axes, mins=mins, steps=steps, fmt=fmt, weights=weights),
        encoding="utf-8",
    )


def zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def build(materials: Path) -> Path:
    """Build every material into ``materials`` (a fresh folder); returns it."""
    (materials / "pwned").mkdir(parents=True)
    (materials / "cache").mkdir()
    _inputs(materials / "inputs")
    models = materials / "models"
    models.mkdir()
    _tensorflow_models(models, materials / "pwned")
    _keras_models(models, materials / "pwned")
    _torchscript_models(models, materials / "pwned")
    _zip_tricks(models)
    _audit_all(materials)
    return materials


def _audit_all(materials: Path) -> None:
    """Audit every bundle into the cases' shared cache, so that a refusal costs no TensorFlow import.

    (Cases marked ``cold_cache`` audit in their own process, from scratch.)
    """
    from deepimagej.audit import audit_bundle
    from deepimagej.bundle import load_bundle
    from deepimagej.errors import DeepImageJError

    before = os.environ.get("DEEPIMAGEJ_CACHE")
    os.environ["DEEPIMAGEJ_CACHE"] = str(materials / "cache" / "deepimagej")
    try:
        for folder in [materials / "inputs" / "pancreatic", *sorted((materials / "models").iterdir())]:
            try:
                audit_bundle(load_bundle(folder))
            except DeepImageJError:
                pass  # the zip tricks: refused before any audit
    finally:
        if before is None:
            del os.environ["DEEPIMAGEJ_CACHE"]
        else:
            os.environ["DEEPIMAGEJ_CACHE"] = before


# --------------------------------------------------------------------------- inputs


def _inputs(folder: Path) -> None:
    folder.mkdir(parents=True)
    shutil.copytree(REPO / "bundles" / "unet-pancreatic", folder / "pancreatic")
    example = tifffile.imread(REPO / "bundles" / "unet-pancreatic" / "exampleImage.tif")
    tifffile.imwrite(folder / "small.tif", example[:96, :128])
    np.save(folder / "small.npy", example[:96, :128].astype(np.float32))
    rng = np.random.default_rng(0)
    np.save(folder / "random.npy", rng.random((64, 64)).astype(np.float32))
    big = (rng.random((3072, 3072)) * 255).astype(np.uint8)  # seconds of work: time to send a signal
    tifffile.imwrite(folder / "big.tif", big)
    np.save(folder / "rgb.npy", (rng.random((32, 32, 3)) * 255).astype(np.float32))
    np.save(folder / "bcyx.npy", rng.random((1, 1, 32, 32)).astype(np.float32))


# --------------------------------------------------------------------------- TensorFlow


def _tf_bundle(models: Path, name: str, body, zipped: bool = True) -> Path:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
        def serve(self, x):
            return {"output": body(x)}

    folder = models / name
    folder.mkdir()
    model = Model()
    saved = folder / "saved_model"
    tf.saved_model.save(model, str(saved), signatures={"serving_default": model.serve})
    if zipped:
        zip_folder(saved, folder / "tensorflow_saved_model_bundle.zip")
        shutil.rmtree(saved)
        write_rdf(folder, name, "tensorflow_saved_model_bundle", "tensorflow_saved_model_bundle.zip")
    else:
        write_rdf(folder, name, "tensorflow_saved_model_bundle", "saved_model")
    return folder


def _tensorflow_models(models: Path, pwned: Path) -> None:
    import tensorflow as tf

    proof = str(pwned / "tf_writefile.txt")

    def write_file(x):
        with tf.control_dependencies([tf.io.write_file(proof, "owned")]):
            return x * 2.0

    _tf_bundle(models, "tf_writefile", write_file)
    recorded = str(pwned / "tf_trust_record.txt")

    def write_record(x):
        with tf.control_dependencies([tf.io.write_file(recorded, "owned")]):
            return x * 2.0

    _tf_bundle(models, "tf_trust_record", write_record)

    def read_file(x):
        return x + tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32) * 0.0

    readfile = _tf_bundle(models, "tf_readfile", read_file, zipped=False)
    tensor = np.random.default_rng(1).random((1, 32, 32, 1)).astype(np.float32)
    np.save(readfile / "test_input.npy", tensor)
    np.save(readfile / "test_output.npy", tensor)  # x + 0
    with open(readfile / "rdf.yaml", "a", encoding="utf-8") as fh:
        fh.write("test_inputs: [test_input.npy]\ntest_outputs: [test_output.npy]\n")

    def matching_files(x):
        return x + tf.cast(tf.size(tf.io.matching_files("/etc/*")), tf.float32) * 0.0

    _tf_bundle(models, "tf_matchingfiles", matching_files)

    def py_function(x):
        y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
        y.set_shape(x.shape)
        return y

    _tf_bundle(models, "tf_pyfunc", py_function)

    def dataset(x):
        lines = tf.data.TextLineDataset("/etc/hostname")
        return x + tf.cast(lines.reduce(0, lambda n, _: n + 1), tf.float32) * 0.0

    _tf_bundle(models, "tf_dataset", dataset)

    printed = str(pwned / "tf_print.txt")

    def print_file(x):
        with tf.control_dependencies([tf.print("owned", output_stream=f"file://{printed}")]):
            return x * 1.0

    _tf_bundle(models, "tf_printv2", print_file)

    looped = str(pwned / "tf_while.txt")

    def while_write(x):
        def step(i):
            with tf.control_dependencies([tf.io.write_file(looped, "owned")]):
                return i + 1

        n = tf.while_loop(lambda i: i < 1, step, [tf.constant(0)])
        return x + tf.cast(n, tf.float32) * 0.0

    _tf_bundle(models, "tf_while", while_write)

    def restore(x):
        (value,) = tf.raw_ops.RestoreV2(
            prefix="/tmp/deepimagej-no-such-checkpoint",
            tensor_names=["w"],
            shape_and_slices=[""],
            dtypes=[tf.float32],
        )
        return x + value * 0.0

    _tf_bundle(models, "tf_restorev2", restore)

    clean = _tf_bundle(models, "tf_clean", lambda x: x * 2.0, zipped=False)
    _unknown_op(models, clean)


def _unknown_op(models: Path, clean: Path) -> None:
    """tf_clean with its multiplication renamed to an op no TensorFlow has (a custom op library's)."""
    from tensorflow.core.protobuf import saved_model_pb2

    folder = models / "tf_unknown_op"
    shutil.copytree(clean / "saved_model", folder / "saved_model")
    pb = folder / "saved_model" / "saved_model.pb"
    model = saved_model_pb2.SavedModel()
    model.ParseFromString(pb.read_bytes())
    for function in model.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "Mul":
                node.op = "DeepimagejEvilOp"
    pb.write_bytes(model.SerializeToString())
    write_rdf(folder, "tf_unknown_op", "tensorflow_saved_model_bundle", "saved_model")


# --------------------------------------------------------------------------- Keras


def _keras_models(models: Path, pwned: Path) -> None:
    import h5py
    import keras

    proof = str(pwned / "keras_lambda.txt")
    action = eval(f"lambda t: (open({proof!r}, 'w').close(), t * 2.0)[1]")
    for suffix in ("h5", "keras"):
        inputs = keras.Input((None, None, 1))
        outputs = keras.layers.Lambda(action, output_shape=lambda s: s)(
            keras.layers.Conv2D(1, 3, padding="same")(inputs)
        )
        folder = models / f"keras_lambda_{suffix}"
        folder.mkdir()
        keras.Model(inputs, outputs).save(str(folder / f"model.{suffix}"))
        write_rdf(folder, folder.name, "keras_hdf5", f"model.{suffix}")
    if Path(proof).exists():
        os.remove(proof)  # saving may trace the lambda: the proof must come from the run only

    folder = models / "keras_custom"
    folder.mkdir()
    inputs = keras.Input((None, None, 1))
    keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs)).save(str(folder / "model.h5"))
    with h5py.File(folder / "model.h5", "r+") as h5:
        config = h5.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        h5.attrs["model_config"] = config.replace(
            '"class_name": "Conv2D"', '"class_name": "EvilConv2D"'
        ).replace('"module": "keras.layers"', '"module": "evil_package.layers"')
    write_rdf(folder, "keras_custom", "keras_hdf5", "model.h5")


# --------------------------------------------------------------------------- TorchScript


def _torchscript_models(models: Path, pwned: Path) -> None:
    import torch

    def save(name: str, module) -> None:
        folder = models / name
        folder.mkdir()
        torch.jit.script(module).save(str(folder / "weights.pt"))
        write_rdf(folder, name, "torchscript", "weights.pt", channels_first=True)

    source = textwrap.dedent(f"""
        import torch
        from typing import Tuple

        class Save(torch.nn.Module):
            def forward(self, x):
                torch.save(x, {str(pwned / "ts_save.pt")!r})
                return x * 2

        class SetState(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.k = 1

            def forward(self, x):
                return x * self.k

            @torch.jit.export
            def __getstate__(self) -> Tuple[int, bool]:
                return (self.k, self.training)

            @torch.jit.export
            def __setstate__(self, state: Tuple[int, bool]) -> None:
                self.k = state[0]
                self.training = state[1]
                torch.save(torch.zeros(1), {str(pwned / "ts_setstate.pt")!r})

        class FromFile(torch.nn.Module):
            def forward(self, x):
                y = torch.from_file("/etc/hostname", size=1, dtype=torch.uint8)
                return x + y.sum() * 0

        class Fails(torch.nn.Module):
            def forward(self, x):
                if x.shape[1] == 1:
                    raise RuntimeError("this model needs 3 channels, got 1")
                return x

        class Clean(torch.nn.Module):
            def forward(self, x):
                return x * 2
    """)
    module_file = models / "hostile_torchscript.py"  # TorchScript compiles classes from their source file
    module_file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("hostile_torchscript", module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_torchscript"] = module
    try:
        spec.loader.exec_module(module)
        for name, cls in (
            ("ts_save", "Save"),
            ("ts_setstate", "SetState"),
            ("ts_from_file", "FromFile"),
            ("ts_error", "Fails"),
            ("ts_clean", "Clean"),
        ):
            save(name, getattr(module, cls)())
    finally:
        del sys.modules["hostile_torchscript"]
        module_file.unlink()


# --------------------------------------------------------------------------- zip tricks


def _zip_bundle(models: Path, name: str) -> Path:
    folder = models / name
    folder.mkdir()
    write_rdf(folder, name, "tensorflow_saved_model_bundle", "tensorflow_saved_model_bundle.zip")
    return folder / "tensorflow_saved_model_bundle.zip"


def _zip_tricks(models: Path) -> None:
    clean = models / "tf_clean" / "saved_model"
    # 1 MiB of zip expanding to 1 GiB (the numbers)
    with zipfile.ZipFile(_zip_bundle(models, "zip_bomb"), "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.write(clean / "saved_model.pb", "saved_model.pb")
        with zf.open("variables/variables.data-00000-of-00001", "w", force_zip64=True) as out:
            block = bytes(1 << 24)
            for _ in range(64):
                out.write(block)
    with zipfile.ZipFile(_zip_bundle(models, "zip_traversal"), "w") as zf:
        zf.write(clean / "saved_model.pb", "saved_model.pb")
        zf.writestr("../../../zip_traversal_escaped.txt", "owned")
    with zipfile.ZipFile(_zip_bundle(models, "zip_absolute"), "w") as zf:
        zf.write(clean / "saved_model.pb", "saved_model.pb")
        zf.writestr("/tmp/deepimagej_zip_absolute.txt", "owned")
    link = zipfile.ZipInfo("variables")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(_zip_bundle(models, "zip_symlink"), "w") as zf:
        zf.write(clean / "saved_model.pb", "saved_model.pb")
        zf.writestr(link, "/etc")
    _zip_bundle(models, "zip_garbage").write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    with zipfile.ZipFile(_zip_bundle(models, "zip_no_model"), "w") as zf:
        zf.writestr("README.txt", "no saved_model.pb in here")
