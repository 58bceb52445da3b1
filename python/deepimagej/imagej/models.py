"""Where ImageJ commands find installed bundles: the models folders.

Searched in order: every folder in ``$DEEPIMAGEJ_MODELS`` (``os.pathsep``-separated), the
``bundles/`` folder of a source checkout, and ``~/.deepimagej/models``. A model is named by its
folder name or by its ``name`` (case, spaces, ``-`` and ``_`` ignored), or given as a path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from deepimagej.errors import BundleError, DeepImageJError

DESCRIPTORS = ("rdf.yaml", "bioimageio.yaml", "config.xml", "model.yaml")
REPO_BUNDLES = Path(__file__).resolve().parents[3] / "bundles"
USER_MODELS = Path.home() / ".deepimagej" / "models"


def models_folders() -> list[Path]:
    """The models folders that exist, in search order."""
    folders: list[Path] = []
    for entry in os.environ.get("DEEPIMAGEJ_MODELS", "").split(os.pathsep):
        if entry.strip():
            folders.append(Path(entry.strip()).expanduser())
    folders += [REPO_BUNDLES, USER_MODELS]
    seen: list[Path] = []
    for f in folders:
        if f.is_dir() and f.resolve() not in [s.resolve() for s in seen]:
            seen.append(f)
    return seen


def _is_bundle(folder: Path) -> bool:
    return folder.is_dir() and (any((folder / d).is_file() for d in DESCRIPTORS) or any(folder.glob("*.bioimageio.yaml")))


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


@dataclass(frozen=True)
class InstalledModel:
    """A bundle found in a models folder; ``spec`` is None (and ``error`` set) when it does not load."""

    folder: Path
    spec: object | None
    error: str | None = None

    @property
    def name(self) -> str:
        return getattr(self.spec, "name", None) or self.folder.name


def installed_models() -> list[InstalledModel]:
    """Every bundle in the models folders (broken ones included, with their error)."""
    from deepimagej.bundle import load_bundle

    found: list[InstalledModel] = []
    for folder in models_folders():
        for sub in sorted(p for p in folder.iterdir() if _is_bundle(p)):
            try:
                found.append(InstalledModel(sub, load_bundle(sub)))
            except DeepImageJError as exc:
                found.append(InstalledModel(sub, None, str(exc)))
    return found


def find_model(model: str | Path):
    """The bundle named ``model`` (folder name, model name, or a path to a bundle).

    Raises:
        BundleError: no such model (the message lists the installed ones and where they were looked for).
    """
    from deepimagej.bundle import load_bundle

    text = str(model).strip().strip("[]").strip()
    path = Path(text).expanduser()
    if text and (path.is_dir() or path.is_file()):
        return load_bundle(path)
    key = _key(text)
    for folder in models_folders():
        cand = folder / text
        if text and _is_bundle(cand):
            return load_bundle(cand)
    for m in installed_models():
        if m.spec is not None and key in (_key(m.folder.name), _key(m.name)):
            return m.spec
    names = ", ".join(sorted({m.folder.name for m in installed_models()})) or "none"
    where = ", ".join(str(f) for f in models_folders()) or "no models folder exists"
    raise BundleError(
        f"model '{text}' not found. Installed models: {names} (looked in {where}; "
        "add folders with the DEEPIMAGEJ_MODELS environment variable)"
    )
