"""Keras models (``.h5`` / ``.keras``), run through a traced TensorFlow function."""

from __future__ import annotations

from collections import Counter

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.errors import EngineError, first_line


def load_keras_model(path):  # noqa: ANN001, ANN201 - returns a keras.Model
    """Load a Keras model file without compiling it; errors become :class:`EngineError`."""
    quiet_tensorflow()
    import keras

    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many kinds; the user needs one line
        first = first_line(exc)
        raise EngineError(f"{path}: cannot load Keras model ({first})") from None


class KerasEngine(Engine):
    """Runs a Keras model; calls go through one ``tf.function`` (no ``model.predict`` overhead)."""

    runtime = "keras"

    def __init__(self, weights: WeightsSpec):
        super().__init__(weights)
        import tensorflow as tf

        self.model = load_keras_model(weights.path)
        self._fn = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self._fn(np.ascontiguousarray(batch, dtype=np.float32))
        if isinstance(out, (list, tuple)):
            out = out[0]
        elif isinstance(out, dict):
            out = next(iter(out.values()))
        return np.asarray(out)

    def describe(self) -> list[str]:
        counts = Counter(type(layer).__name__ for layer in self.model.layers)
        lines = [f"{self.model.name}: {len(self.model.layers)} layers, {self.model.count_params():,} parameters"]
        lines += [f"  {n} x {kind}" for kind, n in counts.most_common()]
        return lines
