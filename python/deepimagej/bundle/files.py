"""Files a descriptor names (weights, test tensors, samples, macros, documentation): inside the bundle.

A descriptor is untrusted text: a file reference such as ``/etc/passwd``, ``~/.ssh/id_rsa``
or ``../../elsewhere.ijm`` would make deepimagej read, load or run a file the bundle does not
hold. :func:`local_path` resolves a reference against the bundle folder and refuses any that
leaves it (absolute paths, ``..`` beyond the folder, home or drive prefixes). A link placed
inside the bundle folder by the user is followed: the check is on the names the descriptor
writes, which is what a downloaded bundle controls (zips with links are refused when unpacked,
see :mod:`deepimagej.archive`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from deepimagej.bundle.axes import one_line
from deepimagej.errors import BundleError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(source: str) -> bool:
    """Whether ``source`` is remote (``http(s)://``, ``zenodo:``...)."""
    return bool(_URL.match(source))


def local_path(
    root: Path, source: str, *, descriptor: Path | str | None = None, field: str = ""
) -> Path | None:
    """Resolve a descriptor's file reference inside the bundle folder ``root``; ``None`` for URLs.

    Args:
        root: the bundle folder (the descriptor's folder).
        source: the reference as written, e.g. ``./weights.onnx`` or ``macros/pre.ijm``.
        descriptor: the descriptor file, for the error message.
        field: the descriptor field, for the error message.

    Raises:
        BundleError: the reference points outside the bundle folder (one line naming the field).
    """
    if is_url(source):
        return None
    text = source.strip().replace("\\", "/")
    pure = PurePosixPath(text)
    depth = 0
    escapes = (
        pure.is_absolute() or text.startswith("~") or bool(re.match(r"^[a-zA-Z]:", text)) or "\x00" in text
    )
    for part in pure.parts:
        depth += -1 if part == ".." else (0 if part in (".", "") else 1)
        escapes = escapes or depth < 0
    if escapes:
        where = f"{descriptor}: " if descriptor else ""
        what = f"field <{field}>" if field else "a file reference"
        raise BundleError(
            one_line(
                f"{where}{what} names {source!r}, outside the bundle folder; a bundle may only use its own files "
                "(copy the file into the bundle folder and name it relatively)"
            )
        )
    return Path(os.path.normpath(Path(root) / text))
