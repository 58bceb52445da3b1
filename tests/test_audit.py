"""The bundle audit and the trust decision: real models audit clean, hostile ones are refused until trusted."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deepimagej import audit
from deepimagej.audit.keras import audit_keras
from deepimagej.audit.tensorflow import audit_saved_model, refused_ops
from deepimagej.audit.torchscript import audit_torchscript
from deepimagej.audit.torchscript import refused_ops as refused_torch_ops
from deepimagej.bundle import load_bundle
from deepimagej.errors import UntrustedBundleError

REPO = Path(__file__).resolve().parents[1]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if p.is_dir())
RDF = """\
format_version: 0.4.10
type: model
name: {name}
inputs:
- {{name: input, axes: byxc, data_type: float32, shape: {{min: [1, 8, 8, 1], step: [0, 8, 8, 0]}}}}
outputs:
- {{name: output, axes: byxc, data_type: float32,
   shape: {{reference_tensor: input, scale: [1, 1, 1, 1], offset: [0, 0, 0, 0]}}}}
weights:
  {fmt}: {{source: {source}}}
"""


@pytest.fixture()
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache and configuration folder (audits and trust records) for one test."""
    monkeypatch.setenv("DEEPIMAGEJ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEEPIMAGEJ_CONFIG", str(tmp_path / "config"))
    return tmp_path


def _saved_model(folder: Path, body) -> Path:
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
        def serve(self, x):
            return {"output": body(x)}

    model = Model()
    tf.saved_model.save(model, str(folder / "saved_model"), signatures={"serving_default": model.serve})
    (folder / "rdf.yaml").write_text(
        RDF.format(name=folder.name, fmt="tensorflow_saved_model_bundle", source="saved_model"),
        encoding="utf-8",
    )
    return folder


def test_registry_policy() -> None:
    refused = refused_ops()
    for op in (
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "PyFunc",
        "EagerPyFunc",
        "TFRecordDataset",
        "SaveV2",
        "RestoreV2",
        "Send",
        "CollectiveReduceV2",
        "DebugIdentityV2",
        "WriteScalarSummary",
    ):
        assert op in refused, op
    for op in (
        "Conv2D",
        "ReadVariableOp",
        "MatMul",
        "Identity",
        "StatefulPartitionedCall",
        "TensorArrayReadV3",
        "ScalarSummary",
        "Conv2DBackpropInput",
        "FusedBatchNormV3",
    ):
        assert op not in refused, op
    torch_refused = refused_torch_ops()
    assert {"aten::save", "aten::from_file", "prim::rpc_async"} <= set(torch_refused)
    assert not {"aten::conv2d", "aten::relu", "prim::Print"} & set(torch_refused)


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda p: p.name)
def test_the_projects_bundles_audit_clean(folder: Path, user_dirs: Path) -> None:
    spec = load_bundle(folder)
    report = audit.audit_bundle(spec)
    assert report.findings == () and report.allowed
    assert any("tensorflow_saved_model_bundle" in a for a in report.audited)
    assert any("keras_hdf5" in a for a in report.audited)


def test_zoo_torchscript_and_keras_audit_clean(assets: Path) -> None:
    nuclei = assets / "bioimageio_unet2d_nuclei_broad" / "weights.pt"
    assert audit_torchscript(nuclei, source="weights.pt") == []
    keras = assets / "unet_pancreatic" / "unet_pancreatic_cell_segmentation.h5"  # Keras 2.3
    assert audit_keras(keras, source="model.h5") == []


def test_write_file_refused_until_trusted_by_content(tmp_path: Path, user_dirs: Path) -> None:
    import tensorflow as tf

    proof = tmp_path / "proof.txt"

    def write(x):
        with tf.control_dependencies([tf.io.write_file(str(proof), "owned")]):
            return x * 2.0

    bundle = _saved_model(tmp_path / "hostile", write)
    spec = load_bundle(bundle)
    weights = spec.weights["tensorflow_saved_model_bundle"]
    with pytest.raises(UntrustedBundleError) as info:
        audit.require_allowed(spec, weights)
    message = str(info.value)
    assert "\n" not in message and "WriteFile" in message and "deepimagej trust" in message
    audit.require_allowed(spec, weights, trust=True)  # one run, trusted
    record = audit.record_trust(spec, ["WriteFile"])
    assert record.parent == user_dirs / "config" / "trusted"
    audit.require_allowed(spec, weights)  # trusted by record
    assert audit.audit_bundle(spec).trust is not None
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    audit.require_allowed(
        load_bundle(copy), load_bundle(copy).weights["tensorflow_saved_model_bundle"]
    )  # same content
    with open(copy / "rdf.yaml", "a", encoding="utf-8") as fh:
        fh.write("# edited\n")
    changed = load_bundle(copy)
    with pytest.raises(UntrustedBundleError):
        audit.require_allowed(changed, changed.weights["tensorflow_saved_model_bundle"])
    assert audit.revoke_trust(spec)
    with pytest.raises(UntrustedBundleError):
        audit.require_allowed(spec, weights)
    assert not proof.exists()  # nothing ran


def test_dead_code_is_shown_not_refused(tmp_path: Path) -> None:
    from tensorflow.core.framework import function_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    bundle = _saved_model(tmp_path / "clean", lambda x: x * 2.0)
    pb = bundle / "saved_model" / "saved_model.pb"
    model = saved_model_pb2.SavedModel()
    model.ParseFromString(pb.read_bytes())
    dead = function_pb2.FunctionDef()
    dead.signature.name = "never_called"
    node = dead.node_def.add()
    node.name, node.op = "w", "WriteFile"
    model.meta_graphs[0].graph_def.library.function.append(dead)
    pb.write_bytes(model.SerializeToString())
    findings = audit_saved_model(bundle / "saved_model", source="saved_model")
    assert [(f.what, f.refused) for f in findings] == [("WriteFile", False)]
    assert "nothing runs" in findings[0].detail


def test_audit_is_cached_by_content(tmp_path: Path, user_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    bundle = _saved_model(
        tmp_path / "reader", lambda x: x + tf.cast(tf.strings.length(tf.io.read_file("/x")), tf.float32)
    )
    spec = load_bundle(bundle)
    weights = spec.weights["tensorflow_saved_model_bundle"]
    first = audit.audit_weights(weights, spec.root)
    assert [f.what for f in first] == ["ReadFile"]
    assert len(list((user_dirs / "cache" / "audits").glob("*.json"))) == 1

    def not_again(*args, **kwargs):
        raise AssertionError("audited twice")

    monkeypatch.setattr("deepimagej.audit.bundle.audit_saved_model", not_again)
    monkeypatch.setattr("deepimagej.audit.bundle._MEMORY", {})
    assert audit.audit_weights(weights, spec.root) == first  # from the disk cache


def test_keras_lambda_and_custom_objects(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((None, None, 1))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    lambda_model.save(str(tmp_path / "lambda.h5"))
    lambda_model.save(str(tmp_path / "lambda.keras"))
    for name in ("lambda.h5", "lambda.keras"):
        findings = audit_keras(tmp_path / name, source=name)
        assert [(f.what, f.refused) for f in findings] == [("Lambda", True)], findings
    clean = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    clean.save(str(tmp_path / "clean.keras"))
    assert audit_keras(tmp_path / "clean.keras", source="clean.keras") == []


def test_torchscript_setstate_is_read_not_run(tmp_path: Path) -> None:
    import torch

    proof = tmp_path / "setstate.pt"
    source = tmp_path / "ts_model.py"
    source.write_text(
        "import torch\nfrom typing import Tuple\n\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.k = 1\n\n"
        "    def forward(self, x):\n        return x * self.k\n\n"
        "    @torch.jit.export\n    def __getstate__(self) -> Tuple[int, bool]:\n        return (self.k, self.training)\n\n"
        "    @torch.jit.export\n    def __setstate__(self, state: Tuple[int, bool]) -> None:\n"
        "        self.k = state[0]\n        self.training = state[1]\n"
        f"        torch.save(torch.zeros(1), {str(proof)!r})\n",
        encoding="utf-8",
    )
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("ts_model", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ts_model"] = module
    try:
        spec.loader.exec_module(module)
        torch.jit.script(module.M()).save(str(tmp_path / "weights.pt"))
    finally:
        del sys.modules["ts_model"]
    findings = audit_torchscript(tmp_path / "weights.pt", source="weights.pt")
    assert [f.what for f in findings] == ["aten::save"] and "not loaded" in findings[0].detail
    assert not proof.exists()
