"""Engines on real runtimes: TF1 graphs (signature or tensor names), TF2 SavedModels, Keras, errors."""

from __future__ import annotations

import numpy as np
import pytest

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines import load_engine
from deepimagej.errors import EngineError


def _tf1_saved_model(folder, with_signature: bool):
    """A real TF1 graph (placeholders + variables) saved with the v1 SavedModel builder."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, None, None, 1], name="input_img")
        w = tf.compat.v1.get_variable("w", initializer=tf.constant(np.full((3, 3, 1, 1), 1 / 9, np.float32)))
        y = tf.identity(tf.nn.conv2d(x, w, 1, "SAME") * 2.0, name="out_img")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(folder))
            signatures = {}
            if with_signature:
                signatures["serving_default"] = tf.compat.v1.saved_model.predict_signature_def(
                    {"input": x}, {"output": y}
                )
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=signatures)
            builder.save()


def _expected(batch):
    from scipy import ndimage

    return 2.0 * ndimage.uniform_filter(batch[0, :, :, 0].astype(np.float64), 3, mode="constant")


@pytest.mark.parametrize("with_signature", [True, False])
def test_tf1_graph(tmp_path, with_signature):
    _tf1_saved_model(tmp_path / "m", with_signature)
    weights = WeightsSpec(
        "tensorflow_saved_model_bundle",
        "m",
        tmp_path / "m",
        tag="tf.saved_model.tag_constants.SERVING",
        signature="tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY",
        input_names=("input_img",),
        output_names=("out_img",),
    )
    engine = load_engine(weights, ["input_img"], ["out_img"])
    batch = np.random.default_rng(0).random((1, 9, 11, 1)).astype(np.float32)
    np.testing.assert_allclose(
        engine({"input_img": batch})["out_img"][0, :, :, 0], _expected(batch), atol=1e-5
    )
    assert engine is load_engine(weights, ["input_img"], ["out_img"])  # loaded once, reused


def test_tf1_graph_without_signature_or_names_is_clear(tmp_path):
    _tf1_saved_model(tmp_path / "m", with_signature=False)
    with pytest.raises(EngineError, match="no tensor names"):
        load_engine(WeightsSpec("tensorflow_saved_model_bundle", "m", tmp_path / "m"))


def test_not_a_saved_model_is_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="saved_model.pb"):
        load_engine(WeightsSpec("tensorflow_saved_model_bundle", "x", tmp_path / "empty"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(EngineError, match="bad.onnx"):
        load_engine(WeightsSpec("onnx", "bad.onnx", bad))
    with pytest.raises(EngineError, match="cannot be run"):
        load_engine(WeightsSpec("tensorflow_js", "model.json", tmp_path / "model.json"))


def test_keras_and_savedmodel_agree(pancreatic_bundle):
    batch = np.random.default_rng(1).random((2, 64, 80, 1)).astype(np.float32)
    names = [pancreatic_bundle.inputs[0].name], [pancreatic_bundle.outputs[0].name]
    tf_engine = load_engine(pancreatic_bundle.weights["tensorflow_saved_model_bundle"], *names)
    keras_engine = load_engine(pancreatic_bundle.weights["keras_hdf5"], *names)
    tf_out = tf_engine({names[0][0]: batch})[names[1][0]]
    keras_out = keras_engine({names[0][0]: batch})[names[1][0]]
    assert tf_out.shape == (2, 64, 80, 1)
    np.testing.assert_allclose(tf_out, keras_out, atol=1e-5)
