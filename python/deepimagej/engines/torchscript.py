"""PyTorch engines: TorchScript modules, and ``pytorch_state_dict`` weights with their architecture.

Both run in ``torch.inference_mode`` on the CPU with the inputs passed positionally in the
descriptor's order. Arrays cross without copies where their memory allows (``torch.from_numpy``
in, ``Tensor.numpy()`` out).

``pytorch_state_dict`` weights need the network's Python source, shipped inside the bundle:
importing it runs that code, so :class:`StateDictEngine` runs only when the caller trusts the
bundle's code (``trust_code=True``, CLI ``--trust-code``). The source is checked against its
``sha256`` and the weights are read with ``torch.load(weights_only=True)`` (tensors only, no
pickled objects).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from deepimagej.bundle.spec import WeightsSpec
from deepimagej.engines.base import Engine, thread_count
from deepimagej.errors import EngineError, first_line


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise EngineError(
            "PyTorch weights need PyTorch: pip install 'deepimagej[torch]' (torch==2.13.0)"
        ) from None
    threads = thread_count()
    if threads:
        torch.set_num_threads(threads)
    return torch


class _TorchEngine(Engine):
    """Calls ``self.module`` on the inputs in the descriptor's order."""

    runtime = "torch"
    module: Any
    _torch: Any  # the torch module (imported on first use)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(batch[name], dtype=np.float32)) for name in self.inputs]
        try:
            with torch.inference_mode():
                out = self.module(*args)
        except Exception as exc:  # noqa: BLE001 - TorchScript raises RuntimeError with a multi-line C++ trace
            raise EngineError(f"{self.path.name}: the PyTorch model failed ({model_message(exc)})") from None
        if isinstance(out, Mapping):
            values = [out[k] for k in self.match("output", self.outputs, list(out))]
        elif isinstance(out, (list, tuple)):
            values = list(out)
        else:
            values = [out]
        if len(values) < len(self.outputs):
            raise EngineError(
                f"{self.path.name}: the model returned {len(values)} output(s), the bundle describes "
                f"{len(self.outputs)} ({', '.join(self.outputs)})"
            )
        return {name: value.numpy() for name, value in zip(self.outputs, values)}

    def describe(self) -> list[str]:
        kinds = Counter(getattr(m, "original_name", type(m).__name__) for m in self.module.modules())
        return [f"  {n} x {k}" for k, n in kinds.most_common(25)]


class TorchScriptEngine(_TorchEngine):
    """Runs a TorchScript module."""

    def __init__(self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str]):
        super().__init__(weights, inputs, outputs)
        torch = self._torch = _torch()
        try:
            self.module = torch.jit.load(str(weights.path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError with multi-line C++ traces
            raise EngineError(f"{weights.path}: cannot load TorchScript model ({first_line(exc)})") from None


class StateDictEngine(_TorchEngine):
    """Builds the bundle's architecture and loads ``pytorch_state_dict`` weights into it (trusted code only)."""

    def __init__(self, weights: WeightsSpec, inputs: Sequence[str], outputs: Sequence[str]):
        super().__init__(weights, inputs, outputs)
        torch = self._torch = _torch()
        arch = weights.architecture
        if arch is None:
            raise EngineError(
                f"{weights.path}: pytorch_state_dict weights without an architecture in the descriptor"
            )
        factory = _load_callable(arch.callable, arch.path, arch.sha256, arch.import_from)
        try:
            module = factory(**arch.kwargs)
        except Exception as exc:  # noqa: BLE001 - the bundle's own code: any error is the bundle's
            raise EngineError(
                f"{arch.source or arch.import_from}: building {arch.callable} failed ({first_line(exc)})"
            ) from None
        try:
            state = torch.load(str(weights.path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - not a weights-only file, damaged file, pickled objects
            raise EngineError(
                f"{weights.path}: cannot load the state dict with weights_only=True ({first_line(exc)})"
            ) from None
        try:
            module.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - missing / unexpected keys, shape mismatches
            raise EngineError(
                f"{weights.path}: the weights do not fit {arch.callable} ({first_line(exc)})"
            ) from None
        self.module = module.eval()


def _load_callable(name: str, path: Any, sha256: str | None, import_from: str | None) -> Any:
    """The architecture's class or function, from the bundle's source file or an importable module."""
    module: ModuleType | None
    if import_from is not None:
        try:
            module = importlib.import_module(import_from)
        except ImportError as exc:
            raise EngineError(
                f"architecture module '{import_from}' cannot be imported ({first_line(exc)})"
            ) from None
    else:
        if path is None or not path.is_file():
            raise EngineError(f"architecture source {path} not found in the bundle")
        source = path.read_bytes()
        if sha256 and hashlib.sha256(source).hexdigest() != sha256.lower():
            raise EngineError(f"{path.name}: sha256 does not match the descriptor's architecture sha256")
        module_name = f"deepimagej_bundle_{hashlib.sha256(source).hexdigest()[:16]}"
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise EngineError(f"{path}: not a Python source file")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the bundle's own code
                raise EngineError(
                    f"{path.name}: importing the architecture failed ({first_line(exc)})"
                ) from None
            sys.modules[module_name] = module
    factory = getattr(module, name, None)
    if not callable(factory):
        raise EngineError(f"architecture '{name}' not found in {import_from or path.name}")
    return factory


def model_message(exc: BaseException) -> str:
    """The model's own message of a TorchScript error: its last line (``RuntimeError: ...``) after the trace."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and "TorchScript" in lines[0]:
        return lines[-1]
    return first_line(exc)
