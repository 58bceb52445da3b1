"""Keras models (``.h5`` / ``.keras``), run through a traced TensorFlow function."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.errors import EngineError, first_line


def load_keras_model(path: str | Path, safe_mode: bool = True) -> Any:
    """Load a Keras model file without compiling it; errors become :class:`EngineError`.

    ``safe_mode`` (Keras 3) refuses to deserialize Python code (``Lambda`` layers); only a
    trusted bundle turns it off.
    """
    quiet_tensorflow()
    import keras

    try:
        return keras.models.load_model(str(path), compile=False, safe_mode=safe_mode)
    except Exception as exc:  # noqa: BLE001 - keras raises many kinds; the user needs one line
        raise EngineError(f"{path}: cannot load Keras model ({first_line(exc)})") from None


class KerasEngine(Engine):
    """Runs a Keras model; calls go through one ``tf.function`` (no ``model.predict`` overhead)."""

    runtime = "keras"

    def __init__(
        self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str], safe_mode: bool = True
    ):
        super().__init__(weights, inputs, outputs)
        import tensorflow as tf

        self.model = load_keras_model(self.path, safe_mode=safe_mode)
        n_in, n_out = len(self.model.inputs), len(self.model.outputs)
        if n_in != len(self.inputs) or n_out < len(self.outputs):
            raise EngineError(
                f"{weights.path}: the Keras model has {n_in} input(s) and {n_out} output(s), the bundle describes "
                f"{len(self.inputs)} and {len(self.outputs)}"
            )
        self._fn = tf.function(
            lambda *x: self.model(list(x) if n_in > 1 else x[0], training=False), reduce_retracing=True
        )

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [np.ascontiguousarray(batch[name], dtype=np.float32) for name in self.inputs]
        out = self._fn(*args)
        if isinstance(out, Mapping):
            out = list(out.values())
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return {name: np.asarray(value) for name, value in zip(self.outputs, out)}

    def describe(self) -> list[str]:
        counts = Counter(type(layer).__name__ for layer in self.model.layers)
        lines = [
            f"{self.model.name}: {len(self.model.layers)} layers, {self.model.count_params():,} parameters"
        ]
        lines += [f"  {n} x {kind}" for kind, n in counts.most_common()]
        return lines
