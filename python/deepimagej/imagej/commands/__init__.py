"""The DeepImageJ (and U-Net) ImageJ commands, implemented in Python and reached through the Java shim.

Each handler is ``handler(ij, macro_options)``; the keys are the arguments the shim's
``deepimagej.ij.Command`` PlugIn is registered with (see :data:`deepimagej.imagej.session.COMMANDS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepimagej.imagej.commands.build import build_command
from deepimagej.imagej.commands.explore import explore_command
from deepimagej.imagej.commands.install import install_command
from deepimagej.imagej.commands.jobs import jobs_command
from deepimagej.imagej.commands.run import run_command
from deepimagej.imagej.commands.train import train_command

HANDLERS: dict[str, Callable[[Any, str | None], None]] = {
    "run": run_command,
    "explore": explore_command,
    "install": install_command,
    "build": build_command,
    "train": train_command,
    "jobs": jobs_command,
}
