"""Where deepimagej keeps its own files: one place for the user cache and config folders.

Both follow the XDG base directory convention and can be moved for tests or shared installs:

- cache (safe to delete: unpacked weights, measured memory models): ``$DEEPIMAGEJ_CACHE``, else
  ``$XDG_CACHE_HOME/deepimagej``, else ``~/.cache/deepimagej``;
- config (what the user decided: hosts, jobs, trusted bundles): ``$DEEPIMAGEJ_CONFIG``, else
  ``$XDG_CONFIG_HOME/deepimagej``, else ``~/.config/deepimagej``.
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
