"""What a TorchScript model would do: its code read before loading, its graphs inspected after.

Loading TorchScript runs code: a module's ``__setstate__`` executes inside ``torch.jit.load``.
So the archive's serialized code (``code/**.py``, read from the zip as text) is checked first
for calls to operations that touch files, the network or other processes (``torch.save``,
``torch.from_file``, RPC, distributed ops) and for ops outside the allowed namespaces; only a
model whose code is clean is loaded, and then every method's graph, inlined, is walked
(nested blocks included) node by node against the same policy, built from TorchScript's
operator registry (:func:`refused_ops`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path

from deepimagej.archive import check_zip, read_member
from deepimagej.audit.findings import Finding
from deepimagej.errors import BundleError, first_line

#: Operator namespaces a model may use: computation only.
ALLOWED_NAMESPACES = frozenset(
    {
        "aten",
        "prim",
        "prims",
        "quantized",
        "_quantized",
        "quantization",
        "sparse",
        "mkldnn",
        "mkldnn_prepacked",
        "onednn",
        "mkl",
        "profiler",
        "torchvision",
    }
)
#: Operators of the allowed namespaces that reach outside the computation.
_REFUSED = re.compile(r"^(aten::(save|from_file)|prim::rpc_\w+|aten::_?rpc\w*|debugprims::load_tensor)$")
_WHY = "reads or writes files, or talks to other processes"
#: How refused operators appear in serialized TorchScript code.
_CODE_CALL = re.compile(r"\btorch\.(save|from_file)\s*\(|\bops\.(\w+)\.(\w+)\s*\(|torch\.classes\.(\w+)")
#: Largest code file read from the archive.
MAX_CODE_BYTES = 16 * 2**20


@functools.lru_cache(maxsize=1)
def refused_ops() -> list[str]:
    """The operators of the installed PyTorch's registry the audit refuses (namespace or name)."""
    import torch

    names = {schema.name for schema in torch._C._jit_get_all_schemas()}
    return sorted(n for n in names if _refused(n))


def _refused(kind: str) -> bool:
    namespace = kind.split("::")[0]
    return namespace not in ALLOWED_NAMESPACES or bool(_REFUSED.match(kind))


def audit_torchscript(path: Path, *, source: str) -> list[Finding]:
    """Audit a TorchScript file: its code text before loading, its graphs after (if the text is clean).

    Raises:
        BundleError: the file is not a TorchScript archive.
    """
    path = Path(path)
    findings = _audit_code(path, source)
    if findings:
        return findings  # never load it: loading runs __setstate__
    return _audit_graphs(path, source)


def _audit_code(path: Path, source: str) -> list[Finding]:
    infos = check_zip(path)
    found: Counter[tuple[str, str]] = Counter()
    for info in infos:
        name = info.filename.replace("\\", "/")
        if "/code/" not in f"/{name}" or not name.endswith(".py"):
            continue
        text = read_member(path, info.filename, MAX_CODE_BYTES).decode("utf-8", errors="replace")
        for match in _CODE_CALL.finditer(text):
            if match.group(1):
                kind = f"aten::{match.group(1)}"
            elif match.group(4):
                kind = f"torch.classes.{match.group(4)}"
            else:
                kind = f"{match.group(2)}::{match.group(3)}"
            if kind.startswith("torch.classes") or _refused(kind):
                found[(kind, name.split("/code/", 1)[-1])] += 1
    return [
        Finding(source, kind, f"{_why(kind)}: {n} x in the model's code ({where}); not loaded", True)
        for (kind, where), n in sorted(found.items())
    ]


def _audit_graphs(path: Path, source: str) -> list[Finding]:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError with C++ traces, and others
        raise BundleError(f"{path}: not a loadable TorchScript model ({first_line(exc)})") from None
    found: Counter[tuple[str, str]] = Counter()
    for method in module._c._method_names():
        graph = module._c._get_method(method).graph.copy()
        torch._C._jit_pass_inline(graph)  # calls into submodules and functions become nodes here
        for kind in _kinds(graph.block()):
            if _refused(kind):
                found[(kind, method)] += 1
    return [
        Finding(source, kind, f"{_why(kind)}: {n} x in method {method}", True)
        for (kind, method), n in sorted(found.items())
    ]


def _kinds(block) -> list[str]:
    kinds = []
    stack = [block]
    while stack:
        for node in stack.pop().nodes():
            kinds.append(node.kind())
            stack.extend(node.blocks())
    return kinds


def _why(kind: str) -> str:
    if kind.startswith("torch.classes"):
        return "uses a custom C++ class from outside PyTorch"
    namespace = kind.split("::")[0]
    if namespace not in ALLOWED_NAMESPACES:
        return f"calls an operator outside the allowed namespaces ({namespace}::)"
    return _WHY
