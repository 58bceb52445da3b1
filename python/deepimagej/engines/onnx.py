"""ONNX engine (onnxruntime, CPU)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine
from deepimagej.errors import EngineError, first_line

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxEngine(Engine):
    """Runs an ONNX graph with onnxruntime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, weights: WeightsSpec):
        super().__init__(weights)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineError("onnx weights need onnxruntime: pip install 'deepimagej[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(weights.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            msg = first_line(exc)
            raise EngineError(f"{weights.path}: cannot load ONNX model ({msg})") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = _ONNX_DTYPES.get(first.type, np.float32)
        batch_dim = first.shape[0] if first.shape else None
        self.fixed_batch_size = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def describe(self) -> list[str]:
        lines = [f"input '{self.input_name}' {self.session.get_inputs()[0].shape} -> output '{self.output_name}'"]
        try:
            import onnx

            model = onnx.load(str(self.weights.path), load_external_data=False)
            ops = Counter(node.op_type for node in model.graph.node)
            lines += [f"  {n} x {op}" for op, n in ops.most_common(25)]
        except ImportError:
            pass
        return lines
