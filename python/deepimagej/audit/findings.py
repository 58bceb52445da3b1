"""The unit of an audit: one thing a bundle would do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One thing a bundle would do that a model should not do (or that the user should know).

    Attributes:
        source: the file it is in, relative to the bundle (``preprocessing.txt``, ``weights.pt``...).
        what: the operation, e.g. ``File.delete``, ``WriteFile``, ``aten::save``.
        detail: one line: where (line, node) and why it matters.
        refused: ``True`` when it stops a run unless the bundle is trusted; ``False`` when it is
            only shown (``deepimagej info``).
    """

    source: str
    what: str
    detail: str
    refused: bool = True

    def __str__(self) -> str:
        verdict = "refused" if self.refused else "note"
        return f"{self.source}: {self.what} ({verdict}): {self.detail}"
