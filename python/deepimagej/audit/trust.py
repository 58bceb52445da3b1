"""The user's trust in bundles: records keyed by the bundle's content hash.

``deepimagej trust BUNDLE`` writes one small JSON record per bundle into
``$XDG_CONFIG_HOME/deepimagej/trusted/`` (see :func:`deepimagej.paths.config_dir`), named by
the SHA-256 of what the bundle would run: its descriptors, weights and macros
(:func:`content_hash`). A record therefore trusts exactly those bytes: change a weights file
or a macro and the record no longer applies; move or copy the bundle and it still does.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deepimagej.bundle import is_descriptor_name
from deepimagej.bundle.spec import ModelSpec
from deepimagej.checksums import sha256_of
from deepimagej.outputs import write_text_atomic
from deepimagej.paths import config_dir


def content_hash(spec: ModelSpec) -> str:
    """SHA-256 over the bundle's descriptors, weights (files or SavedModel folders) and macros.

    Files are hashed by content (streamed, cached per path, size and modification time) and
    combined with their path relative to the bundle folder, in sorted order.
    """
    root = spec.root
    # every descriptor of the folder, not only the chosen one: the other may be read (merged)
    files: set[Path] = (
        {p for p in root.iterdir() if p.is_file() and is_descriptor_name(p.name)} if root.is_dir() else set()
    )
    files.add(spec.source)
    for weights in spec.weights.values():
        if weights.path is not None:
            files.update(_files(weights.path))
    for macro in (*spec.preprocessing_macros, *spec.postprocessing_macros):
        files.update(_files(macro))
    return _files_digest(files, root)


def path_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names + contents)."""
    path = Path(path)
    if path.is_file():
        return sha256_of(path)
    return _files_digest(_files(path), path)


def _files_digest(files: Iterable[Path], root: Path) -> str:
    """SHA-256 over each file's name relative to ``root`` and its own SHA-256, in name order."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: relative_name(p, root)):
        digest.update(f"{relative_name(path, root)}\0{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return []


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to the bundle folder ``root`` (POSIX), else its file name."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


def records_dir() -> Path:
    """Folder of the trust records."""
    return config_dir() / "trusted"


def trust_record(spec: ModelSpec) -> dict[str, Any] | None:
    """The user's trust record for this exact bundle content, or ``None``."""
    record = records_dir() / f"{content_hash(spec)}.json"
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_trust(spec: ModelSpec, findings: list[str]) -> Path:
    """Record that the user trusts this bundle's content (with what its audit found)."""
    digest = content_hash(spec)
    record = records_dir() / f"{digest}.json"
    data = {
        "name": spec.name,
        "bundle": str(spec.root.resolve()),
        "content_sha256": digest,
        "trusted_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "findings": findings,
    }
    write_text_atomic(record, json.dumps(data, indent=2) + "\n")
    return record


def revoke_trust(spec: ModelSpec) -> bool:
    """Remove the trust record of this bundle's content; whether there was one."""
    record = records_dir() / f"{content_hash(spec)}.json"
    existed = record.is_file()
    record.unlink(missing_ok=True)
    return existed


def trust_records() -> list[dict[str, Any]]:
    """Every trust record, oldest first."""
    records = []
    for path in sorted(records_dir().glob("*.json")) if records_dir().is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            records.append(data)
    return sorted(records, key=lambda r: str(r.get("trusted_at", "")))
