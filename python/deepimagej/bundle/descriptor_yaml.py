"""Parse a model descriptor's YAML as untrusted text: within limits, every failure one line.

:func:`load_yaml` is PyYAML's safe loader with three limits checked while parsing, so that a
hostile or broken ``rdf.yaml`` is refused in milliseconds instead of exhausting memory: the file
size (:data:`MAX_DESCRIPTOR_BYTES`), the nesting depth (:data:`MAX_DEPTH`) and the number of
values once aliases are expanded (:data:`MAX_NODES`, against "billion laughs" files), with
self-referencing aliases refused. :mod:`deepimagej.bundle.bioimageio` reads the mapping it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deepimagej.bundle.axes import one_line
from deepimagej.errors import BundleError

__all__ = ["MAX_DEPTH", "MAX_DESCRIPTOR_BYTES", "MAX_NODES", "load_yaml"]

#: Parsing limits for descriptors (see :func:`load_yaml`).
MAX_DESCRIPTOR_BYTES = 4 * 2**20
MAX_DEPTH = 64
MAX_NODES = 100_000


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse ``path`` as YAML into a mapping, within limits; every failure is a one-line :class:`BundleError`.

    A descriptor is untrusted text: files over :data:`MAX_DESCRIPTOR_BYTES`, nesting deeper than
    :data:`MAX_DEPTH` and aliases that expand to more than :data:`MAX_NODES` nodes (a "billion
    laughs" YAML) or refer to themselves are refused while parsing, in milliseconds.
    """
    try:
        size = path.stat().st_size
        if size > MAX_DESCRIPTOR_BYTES:
            raise BundleError(
                f"{path}: {size / 2**20:.1f} MiB, too large for a model descriptor (at most "
                f"{MAX_DESCRIPTOR_BYTES // 2**20} MiB); is it the right file?"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(one_line(f"{path}: cannot read the file ({exc.strerror or exc})")) from None
    except UnicodeDecodeError:
        raise BundleError(f"{path}: not a UTF-8 text file") from None
    try:
        data = yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader with limits
    except _LimitError as exc:
        raise BundleError(
            one_line(f"{path}: refused: {exc}; a model descriptor is plain, shallow YAML")
        ) from None
    except RecursionError:
        raise BundleError(
            f"{path}: refused: nested too deeply; a model descriptor is plain, shallow YAML"
        ) from None
    except yaml.YAMLError as exc:
        raise BundleError(one_line(f"{path}: not valid YAML{_yaml_where(exc)}")) from None
    if not isinstance(data, dict):
        raise BundleError(
            f"{path}: a model descriptor must be a YAML mapping (key: value), got {type(data).__name__}"
        )
    return data


class _LimitError(yaml.YAMLError):
    """A descriptor beyond the parsing limits (depth, alias expansion, self-reference)."""


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit while composing and a size limit on the composed tree."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node: yaml.Node, memo: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in ``node`` with every alias expanded (the size a consumer walking it would see)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_nodes:
        raise _LimitError("an alias refers to the node that contains it (a recursive structure)")
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, open_nodes)
        if total > MAX_NODES:
            raise _LimitError(f'aliases expand to more than {MAX_NODES:,} values (a "billion laughs" YAML)')
    open_nodes.discard(key)
    memo[key] = total
    return total


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where} ({problem})" if problem else where
