"""Signals in the middle of work: the command stops promptly, leaves no partial output and no process."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np

from hostile.case import INTERRUPTED, KILLED, Case

PANCREATIC = "{M}/inputs/pancreatic"
BIG = "{M}/inputs/big.tif"


def _nothing_written(*names: str, temporary_ok: bool = False):
    """None of ``names`` exists; nor any temporary file, unless ``temporary_ok`` (SIGKILL: nothing can clean)."""

    def check(case: Path, materials: Path, outcome) -> str | None:
        for name in names:
            if (case / name).exists():
                return f"{name} exists after the command was stopped"
        ours = (".config", ".cache", ".keras")  # the case's own folders (HOME, XDG) and Keras' config folder
        hidden = [p.name for p in case.iterdir() if p.name.startswith(".") and p.name not in ours]
        if temporary_ok:
            hidden = [h for h in hidden if not h.endswith(".part")]
        if hidden:
            return f"temporary files left: {hidden}"
        return None

    return check


def _big_test_bundle(case: Path, materials: Path) -> None:
    """The pancreatic bundle with a large test image (seconds of work for `deepimagej test`)."""
    shutil.copytree(materials / "inputs" / "pancreatic", case / "b")
    big = np.random.default_rng(7).random((1, 2048, 2048, 1)).astype(np.float32)
    np.save(case / "b" / "exampleImage.npy", big)
    np.save(case / "b" / "resultImage.npy", big)


CASES = [
    Case(
        "sigint_during_run",
        INTERRUPTED,
        argv=("run", PANCREATIC, BIG, "-o", "{C}/out.tif"),
        signal=(signal.SIGINT, 2.0),
        check=_nothing_written("out.tif"),
    ),
    Case(
        "sigterm_during_run",
        INTERRUPTED,
        argv=("run", PANCREATIC, BIG, "-o", "{C}/out.tif"),
        signal=(signal.SIGTERM, 2.0),
        check=_nothing_written("out.tif"),
    ),
    Case(
        "sigkill_during_run",
        KILLED,
        argv=("run", PANCREATIC, BIG, "-o", "{C}/out.tif"),
        signal=(signal.SIGKILL, 2.0),
        check=_nothing_written("out.tif", temporary_ok=True),
    ),
    Case(
        "sigterm_during_test",
        INTERRUPTED,
        argv=("test", "{C}/b"),
        signal=(signal.SIGTERM, 1.0),
        setup=_big_test_bundle,
        check=_nothing_written(),
    ),
    Case("sigint_while_loading", INTERRUPTED, argv=("info", PANCREATIC), signal=(signal.SIGINT, 0.0)),
    Case(
        "sigterm_during_build",
        INTERRUPTED,
        argv=("build", "{M}/inputs/pancreatic/model.h5", "--out", "{C}/built", "--example", BIG),
        signal=(signal.SIGTERM, 3.0),
        check=_nothing_written("built"),
    ),
]
