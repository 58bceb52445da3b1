"""Where ImageJ commands find installed bundles: the models folders.

Searched in order: every folder in ``$DEEPIMAGEJ_MODELS`` (``os.pathsep``-separated), the
``bundles/`` folder of a source checkout, and ``~/.deepimagej/models``. A model is named by its
folder name or by its ``name`` (case, spaces, ``-`` and ``_`` ignored), or given as a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deepimagej import paths
from deepimagej.bundle import is_bundle_folder
from deepimagej.errors import BundleError, DeepImageJError
from deepimagej.outputs import replace_path
from deepimagej.paths import models_folders


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
        for sub in sorted(p for p in folder.iterdir() if is_bundle_folder(p)):
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
        if text and is_bundle_folder(cand):
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


#: the most a bundle may expand to when installed from a zip (weights of large models included)
MAX_INSTALL_BYTES = 20 * 2**30


def install_model(source: str | Path, models_folder: str | Path | None = None, *, overwrite: bool = False):
    """Install a bundle (a ``.zip`` file or a folder) into a models folder; returns its spec.

    The bundle is unpacked (or copied) next to its destination, checked by loading it, then
    moved into place in one step: a broken bundle leaves nothing behind. Zip entries that
    would land outside the bundle (absolute paths, ``..``), links, and archives that expand
    beyond :data:`MAX_INSTALL_BYTES` are refused.

    Args:
        source: the bundle, as a zip file (its files at the top or in one folder) or a folder.
        models_folder: where installed models live (default ``~/.deepimagej/models``).
        overwrite: replace an installed model of the same folder name.

    Raises:
        BundleError: not a bundle, an unsafe zip, or the model is already installed.
    """
    import shutil
    import tempfile
    import zipfile

    from deepimagej.bundle import load_bundle

    source = Path(str(source).strip()).expanduser()
    target_root = Path(models_folder).expanduser() if models_folder else paths.USER_MODELS
    if not source.exists():
        raise BundleError(f"{source}: no such bundle file or folder")
    if source.is_file() and not zipfile.is_zipfile(source):
        raise BundleError(f"{source}: not a zip file or a folder; give a DeepImageJ/bioimage.io bundle")
    target_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=target_root))
    try:
        if source.is_dir():
            if any(p.is_symlink() for p in source.rglob("*")):
                raise BundleError(f"{source}: the bundle contains links; copy the files themselves into it")
            bundle = staging / source.name
            shutil.copytree(source, bundle)
        else:
            bundle = _unzip_bundle(source, staging)
        if not is_bundle_folder(bundle):
            raise BundleError(
                f"{source}: no rdf.yaml, bioimageio.yaml or config.xml in it; not a model bundle"
            )
        load_bundle(bundle)  # a broken bundle stops here, with its own message
        final = target_root / bundle.name
        if final.exists() and not overwrite:
            raise BundleError(
                f"a model '{bundle.name}' is already installed in {target_root}; remove it first "
                "(or install with overwrite)"
            )
        replace_path(bundle, final)  # the old model stays whole until the new one is in place
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_bundle(final)


def _unzip_bundle(zip_path: Path, staging: Path) -> Path:
    """Unpack ``zip_path`` under ``staging`` (checked by :mod:`deepimagej.archive`: names, links,
    sizes, zip bombs); returns the bundle's folder: the zip's one top folder, or one named after
    the zip when its files are at the top."""
    from deepimagej.archive import ZipLimits, check_zip, extract_zip

    limits = ZipLimits(max_total=MAX_INSTALL_BYTES)
    infos = check_zip(zip_path, limits)
    entries = [(Path(i.filename).parts, i.is_dir()) for i in infos if Path(i.filename).parts]
    tops = {parts[0] for parts, _ in entries}
    nested = len(tops) == 1 and all(len(parts) > 1 or is_dir for parts, is_dir in entries)
    if nested:
        return extract_zip(zip_path, staging / "unpacked", limits) / next(iter(tops))
    return extract_zip(zip_path, staging / zip_path.stem, limits)
