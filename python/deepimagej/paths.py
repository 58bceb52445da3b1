"""Where deepimagej keeps its own files: one place for the user cache and config folders.

Both follow the XDG base directory convention and can be moved for tests or shared installs:

- cache (safe to delete: unpacked weights, measured memory models): ``$DEEPIMAGEJ_CACHE``, else
  ``$XDG_CACHE_HOME/deepimagej``, else ``~/.cache/deepimagej``;
- config (what the user decided: hosts, jobs, trusted bundles): ``$DEEPIMAGEJ_CONFIG``, else
  ``$XDG_CONFIG_HOME/deepimagej``, else ``~/.config/deepimagej``;
- models (bundles the user installed, and those the commands list): :func:`models_folders`.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder of deepimagej (not created)."""
    root = os.environ.get("DEEPIMAGEJ_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepimagej"


def config_dir() -> Path:
    """The user config folder of deepimagej (not created)."""
    root = os.environ.get("DEEPIMAGEJ_CONFIG")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "deepimagej"


#: The ``bundles/`` folder of a source checkout (the example bundles built by ``make models``).
REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
#: Where installed models go (``deepimagej install``, ImageJ's "DeepImageJ Install Model").
USER_MODELS = Path.home() / ".deepimagej" / "models"


def models_folders() -> list[Path]:
    """The models folders that exist, in search order: every folder of ``$DEEPIMAGEJ_MODELS``
    (``os.pathsep``-separated), the checkout's ``bundles/``, then :data:`USER_MODELS`."""
    folders = [
        Path(e.strip()).expanduser()
        for e in os.environ.get("DEEPIMAGEJ_MODELS", "").split(os.pathsep)
        if e.strip()
    ]
    folders += [REPO_BUNDLES, USER_MODELS]
    seen: list[Path] = []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in [s.resolve() for s in seen]:
            seen.append(folder)
    return seen
