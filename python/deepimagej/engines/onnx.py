"""ONNX engine (onnxruntime, CPU)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine, thread_count
from deepimagej.errors import EngineError, first_line

_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class OnnxEngine(Engine):
    """Runs an ONNX graph with onnxruntime's CPU provider (one session, reused)."""

    runtime = "onnxruntime"

    def __init__(self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str]):
        super().__init__(weights, inputs, outputs)
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineError("onnx weights need onnxruntime: pip install 'deepimagej[onnx]'") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = thread_count()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(weights.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise EngineError(f"{weights.path}: cannot load ONNX model ({first_line(exc)})") from None
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        self._feed = self.match("input", self.inputs, list(graph_inputs))
        self._fetch = self.match("output", self.outputs, [o.name for o in self.session.get_outputs()])
        self._dtypes = {
            ours: _ONNX_DTYPES.get(graph_inputs[theirs].type, np.float32)
            for ours, theirs in self._feed.items()
        }
        batch_dims = {
            graph_inputs[theirs].shape[0] if graph_inputs[theirs].shape else None
            for theirs in self._feed.values()
        }
        fixed = [d for d in batch_dims if isinstance(d, int) and d > 0]
        self.fixed_batch_size = fixed[0] if fixed else None
        self._names = list(self._fetch.values())

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {
            theirs: np.ascontiguousarray(batch[ours], dtype=self._dtypes[ours])
            for ours, theirs in self._feed.items()
        }
        try:
            results = self.session.run(self._names, feed)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors carry the graph's own message
            raise EngineError(f"{self.path.name}: the ONNX model failed ({first_line(exc)})") from None
        return dict(zip(self._fetch, results))

    def describe(self) -> list[str]:
        ins = ", ".join(f"'{i.name}' {i.shape}" for i in self.session.get_inputs())
        outs = ", ".join(f"'{o.name}'" for o in self.session.get_outputs())
        lines = [f"inputs {ins} -> outputs {outs}"]
        try:
            import onnx
        except ImportError:
            return lines
        model = onnx.load(str(self.weights.path), load_external_data=False)
        ops = Counter(node.op_type for node in model.graph.node)
        return lines + [f"  {n} x {op}" for op, n in ops.most_common(25)]
