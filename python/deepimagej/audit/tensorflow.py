"""What a TensorFlow SavedModel would do, read from its graph before anything runs.

The ``saved_model.pb`` is parsed as data (protobuf, read from the zip without extracting it);
no TensorFlow function is loaded or executed. Every operation of the graph and of its function
library is classified with :data:`CATEGORY_PATTERNS`, name patterns applied to TensorFlow's op
registry (:func:`refused_ops` lists the result for the installed TensorFlow): file access
(``ReadFile``, ``WriteFile``, ``MatchingFiles``, readers, summary writers, debug dumps),
Python callbacks (``PyFunc``, ``EagerPyFunc``), network and cross-process ops (``Send``/
``Recv``, collectives, RPC, data service), data pipelines (``*Dataset*``, iterators), sleeps,
and checkpoint ops (``SaveV2``, ``RestoreV2``...). Operations the registry does not know (a
custom op library) are refused too.

Where an operation sits decides the verdict: the graph is split into what loading and calling
the model runs (signatures, init ops, the object graph's functions: "model code"), what only
the SavedModel's own saver runs (checkpoint ops are expected there: that is how weights are
loaded) and dead code that nothing runs (shown, not refused).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from deepimagej.archive import check_zip, read_member
from deepimagej.audit.findings import Finding
from deepimagej.bundle.formats import SAVED_MODEL_PB
from deepimagej.errors import BundleError

#: (category, pattern over op names): the first match classifies an op. Names are TensorFlow's
#: registered op names (``tf.raw_ops`` plus internal ``_Name`` ops).
CATEGORY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("runs Python code", re.compile(r"PyFunc")),
    (
        "reads or writes files",
        re.compile(
            r"^(ReadFile|WriteFile|MatchingFiles|ImmutableConst|LoadAndRemapMatrix|GenerateVocabRemapping"
            r"|RecordInput|FileSystemSetConfiguration|DecodeProtoV2|EncodeProto)$|TextFile|Reader(V2)?$|^Reader|LMDB|Sql"
            r"|^Write\w*Summary$|SummaryWriter|SummaryDbWriter|^Debug(Identity|NanCount|NumericSummary)"
            r"|Snapshot|(Save|Load)Dataset|DistributedSave|ToTFRecord"
            r"|(TFRecord|TextLine|FixedLengthRecord|CSV|MatchingFiles|Cache)Dataset"
        ),
    ),
    (
        "talks to the network or other processes",
        re.compile(
            r"^_?(Send|Recv)$|^_Host(Send|Recv)|^_Nccl|Collective|Rpc|DataService|RegisterDataset"
            r"|DistributedTPU|TPUEmbedding|^_Xla(Send|Recv)|XlaSendToHost|XlaRecvFromHost"
        ),
    ),
    (
        "checkpoint files",
        re.compile(r"^(Save|SaveV2|SaveSlices|Restore|RestoreV2|RestoreSlice|MergeV2Checkpoints)$"),
    ),
    ("runs a data pipeline", re.compile(r"Dataset|Iterator")),
    ("sleeps", re.compile(r"Sleep")),
)
CHECKPOINT = "checkpoint files"
UNKNOWN = "is not a TensorFlow operation (it needs a custom op library)"
#: ``PrintV2`` writes where its ``output_stream`` says; a ``file://`` stream writes a file.
_PRINT_FILE = re.compile(r"^file://")
#: Largest ``saved_model.pb`` read (protobuf's own limit is 2 GiB).
MAX_GRAPH_BYTES = 1 << 30
#: Collections whose nodes TensorFlow runs when loading a SavedModel.
_LOAD_COLLECTIONS = ("init", "main_op", "table_initializer")


def classify(op: str) -> str | None:
    """The category of an op name among :data:`CATEGORY_PATTERNS`, or ``None`` for a plain computation."""
    for category, pattern in CATEGORY_PATTERNS:
        if pattern.search(op):
            return category
    return None


@functools.lru_cache(maxsize=1)
def refused_ops() -> dict[str, str]:
    """Every op of the installed TensorFlow's registry that the audit flags, with its category."""
    from deepimagej.engines.tensorflow import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    names = [n for n in dir(tf.raw_ops) if not n.startswith("_")]
    return {name: category for name in names if (category := classify(name)) is not None}


def audit_saved_model(path: Path, *, source: str, output_names: Iterable[str] = ()) -> list[Finding]:
    """Audit a SavedModel (folder, ``saved_model.pb`` or DeepImageJ zip) without loading it.

    Args:
        path: the weights path as the descriptor gives it.
        source: the name to show for it (relative to the bundle).
        output_names: tensor names the bundle fetches from a TF1 graph without signature.

    Returns:
        One finding per (operation, place); ``refused`` unless the place is dead code, or
        checkpoint ops inside the saver.

    Raises:
        BundleError: no ``saved_model.pb``, or one that is not a SavedModel.
    """
    from google.protobuf.message import DecodeError

    from deepimagej.engines.tensorflow import quiet_tensorflow

    quiet_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(_graph_bytes(Path(path)))
    except DecodeError:
        raise BundleError(f"{path}: saved_model.pb is not a TensorFlow SavedModel (damaged?)") from None
    known = functools.partial(_is_registered, op_def_registry)
    findings: list[Finding] = []
    for meta_graph in model.meta_graphs:
        findings += _GraphAudit(meta_graph, source, list(output_names), known).findings()
    return _unique(findings)


def _is_registered(registry, op: str) -> bool:
    return registry.get(op) is not None


def _graph_bytes(path: Path) -> bytes:
    if path.is_file() and path.suffix.lower() == ".zip":
        names = [
            i.filename for i in check_zip(path) if i.filename.replace("\\", "/").endswith(SAVED_MODEL_PB)
        ]
        if not names:
            raise BundleError(
                f"{path}: no saved_model.pb inside; the weights must be a zipped TensorFlow SavedModel"
            )
        return read_member(path, min(names, key=len), MAX_GRAPH_BYTES)
    pb = path if path.name == SAVED_MODEL_PB else path / SAVED_MODEL_PB
    if not pb.is_file() and path.is_dir():
        found = sorted(path.rglob(SAVED_MODEL_PB), key=lambda p: len(p.parts))
        pb = found[0] if found else pb
    if not pb.is_file():
        raise BundleError(f"{path}: no saved_model.pb found; the weights must be a TensorFlow SavedModel")
    if pb.stat().st_size > MAX_GRAPH_BYTES:
        raise BundleError(
            f"{pb}: larger than {MAX_GRAPH_BYTES >> 20} MiB; not a model graph deepimagej reads"
        )
    return pb.read_bytes()


def _node_name(tensor: str) -> str:
    """``^name``, ``name:0`` -> ``name``."""
    return tensor.lstrip("^").split(":")[0]


class _GraphAudit:
    """One meta graph: which nodes and functions run, and what their operations do."""

    def __init__(self, meta_graph, source: str, output_names: list[str], known) -> None:
        self.source = source
        self.known = known
        graph = meta_graph.graph_def
        self.nodes = {n.name: n for n in graph.node}
        self.functions = {f.signature.name: f for f in graph.library.function}
        saver = meta_graph.saver_def
        saver_roots = {_node_name(t) for t in (saver.save_tensor_name, saver.restore_op_name) if t}
        run_roots: set[str] = set()
        for signature in meta_graph.signature_def.values():
            for info in [*signature.inputs.values(), *signature.outputs.values()]:
                if info.name:
                    run_roots.add(_node_name(info.name))
        for key, collection in meta_graph.collection_def.items():
            if any(word in key for word in _LOAD_COLLECTIONS):
                run_roots.update(_node_name(n) for n in collection.node_list.value)
        run_roots.update(_node_name(n) for n in output_names)
        run_roots &= set(self.nodes)
        saver_roots &= set(self.nodes)
        if not run_roots:  # nothing says what runs: everything but the saver might
            run_roots = set(self.nodes) - self._closure(saver_roots)
        self.run_nodes = self._closure(run_roots)
        self.saver_nodes = self._closure(saver_roots) - self.run_nodes
        object_functions = set(meta_graph.object_graph_def.concrete_functions)
        self.run_functions = self._called(self.run_nodes, extra=object_functions)
        self.saver_functions = self._called(self.saver_nodes) - self.run_functions

    def _closure(self, roots: set[str]) -> set[str]:
        """Nodes the ``roots`` depend on (inputs and control inputs), themselves included."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            stack.extend(_node_name(i) for i in self.nodes[name].input)
        return seen

    def _calls(self, node) -> set[str]:
        names = {node.op} if node.op in self.functions else set()
        for value in node.attr.values():
            if value.HasField("func"):
                names.add(value.func.name)
            elif value.HasField("list"):
                names.update(f.name for f in value.list.func)
        return names & set(self.functions)

    def _called(self, node_names: set[str], extra: Iterable[str] = ()) -> set[str]:
        """Functions called, directly or through other functions, by ``node_names`` (+ ``extra``)."""
        stack = [f for f in extra if f in self.functions]
        for name in node_names:
            stack.extend(self._calls(self.nodes[name]))
        seen: set[str] = set()
        while stack:
            fname = stack.pop()
            if fname in seen:
                continue
            seen.add(fname)
            for node in self.functions[fname].node_def:
                stack.extend(self._calls(node))
        return seen

    def findings(self) -> list[Finding]:
        found: dict[tuple[str, str, bool], Counter[str]] = {}
        for name, node in self.nodes.items():
            place = (
                "model code" if name in self.run_nodes else ("saver" if name in self.saver_nodes else "dead")
            )
            self._check(node, place, "the graph", found)
        for fname, function in self.functions.items():
            place = (
                "model code"
                if fname in self.run_functions
                else ("saver" if fname in self.saver_functions else "dead")
            )
            for node in function.node_def:
                self._check(node, place, f"function {fname}", found)
        result = []
        for (op, why, refused), places in sorted(found.items()):
            count = sum(places.values())
            names = sorted(places)
            where = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
            result.append(Finding(self.source, op, f"{why}: {count} x in {where}", refused))
        return result

    def _check(self, node, place: str, where: str, found: dict) -> None:
        op = node.op
        if op in self.functions:
            return
        category = classify(op)
        if category is None and op == "PrintV2":
            stream = (
                node.attr["output_stream"].s.decode(errors="replace") if "output_stream" in node.attr else ""
            )
            category = "reads or writes files" if _PRINT_FILE.match(stream) else None
        if category is None and not self.known(op):
            category = UNKNOWN
        if category is None or (category == CHECKPOINT and place == "saver"):
            return
        if place == "dead":
            key = (op, f"{category}, in code nothing runs", False)
        else:
            key = (op, category if category == UNKNOWN else f"{category}, in the {place}", True)
        found.setdefault(key, Counter())[where] += 1


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))
