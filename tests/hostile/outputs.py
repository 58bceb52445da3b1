"""Output paths that would lose data or cannot be written; formats chosen by the extension."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from hostile.case import ERROR, OK, Case

PANCREATIC = "{M}/inputs/pancreatic"
REPO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "unet-pancreatic"


def with_input(*extra):
    """The case folder holds ``in.tif`` (a copy of the small test image) and what ``extra`` adds."""

    def setup(case: Path, materials: Path) -> None:
        shutil.copy(materials / "inputs" / "small.tif", case / "in.tif")
        for make in extra:
            make(case)

    return setup


def run(out: str, *extra: str, bundle: str = PANCREATIC, image: str = "{C}/in.tif") -> tuple[str, ...]:
    return ("run", bundle, image, "-o", out, *extra)


def _file(name: str):
    return lambda case: (case / name).write_text("the user's notes\n", encoding="utf-8")


def _readonly(case: Path) -> None:
    """A folder without write permission; immutable as well when running as root (root ignores permissions)."""
    (case / "ro").mkdir()
    (case / "ro").chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(case / "ro")], check=True)


def _writable_again(case: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(case / "ro")], check=False)
    (case / "ro").chmod(0o755)


def _chattr() -> str | None:
    if os.geteuid() != 0:
        return None
    return (
        None if shutil.which("chattr") else "running as root without chattr: cannot make a folder read-only"
    )


def _exists(name: str, *, png: bool = False, npy: bool = False):
    def check(case: Path, materials: Path, outcome) -> str | None:
        path = case / name
        if not path.is_file():
            return f"{name} was not written"
        if png and path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            return f"{name} is not a PNG file"
        if npy:
            np.load(path, allow_pickle=False)
        return None

    return check


def _absent(name: str):
    def check(case: Path, materials: Path, outcome) -> str | None:
        return f"{name} was written although the run failed" if (case / name).exists() else None

    return check


def _mountable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    probe = Path(tempfile.mkdtemp(prefix="deepimagej-mount-probe-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True, check=False
        )
        if done.returncode != 0:
            return "cannot mount a tmpfs here"
        subprocess.run(["umount", str(probe)], check=False)
        return None
    finally:
        probe.rmdir()


def _tmpfs(size: str, readonly: bool = False):
    def setup(case: Path, materials: Path) -> None:
        np.save(case / "big.npy", np.random.default_rng(5).random((1024, 1024)).astype(np.float32))
        (case / "disk").mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(case / "disk")], check=True
        )
        if readonly:
            subprocess.run(["mount", "-o", "remount,ro", str(case / "disk")], check=True)

    return setup


def _unmount(case: Path) -> None:
    subprocess.run(["umount", str(case / "disk")], check=False)


def _big_input(case: Path, materials: Path) -> None:
    np.save(case / "big.npy", np.random.default_rng(6).random((1024, 1024)).astype(np.float32))
    np.save(case / "out.npy", np.arange(10))  # a previous result: must survive a failed write


def _weights_copy(case: Path, materials: Path) -> None:
    (case / "work").mkdir()
    shutil.copy(REPO_BUNDLE / "model.h5", case / "work" / "model.h5")


def _user_folder(case: Path, materials: Path) -> None:
    (case / "docs").mkdir()
    (case / "docs" / "thesis.txt").write_text("years of work\n", encoding="utf-8")


CASES = [
    Case("out_is_the_input", ERROR, argv=run("{C}/in.tif"), says=("input of this run",), setup=with_input()),
    Case(
        "out_resolves_to_input",
        ERROR,
        argv=run("{C}/sub/../in.tif"),
        says=("input of this run",),
        setup=with_input(lambda c: (c / "sub").mkdir()),
    ),
    Case(
        "out_symlink_to_input",
        ERROR,
        argv=run("{C}/link.tif"),
        says=("input of this run",),
        setup=with_input(lambda c: os.symlink(c / "in.tif", c / "link.tif")),
    ),
    Case(
        "out_hardlink_to_input",
        ERROR,
        argv=run("{C}/hard.tif"),
        says=("input of this run",),
        setup=with_input(lambda c: os.link(c / "in.tif", c / "hard.tif")),
    ),
    Case(
        "out_over_bundle_file",
        ERROR,
        argv=run("{C}/b/exampleImage.tif", bundle="{C}/b"),
        says=("input of this run",),
        setup=with_input(lambda c: shutil.copytree(REPO_BUNDLE, c / "b")),
    ),
    Case(
        "out_read_only_folder",
        ERROR,
        argv=run("{C}/ro/out.tif"),
        says=("permission",),
        setup=with_input(_readonly),
        teardown=_writable_again,
        requires=_chattr,
    ),
    Case(
        "out_parent_is_a_file",
        ERROR,
        argv=run("{C}/afile/out.tif"),
        says=("is a file",),
        setup=with_input(_file("afile")),
    ),
    Case(
        "out_grandparent_is_a_file",
        ERROR,
        argv=run("{C}/afile/sub/out.tif"),
        says=("is a file",),
        setup=with_input(_file("afile")),
    ),
    Case(
        "out_name_too_long",
        ERROR,
        argv=run("{C}/" + "x" * 300 + ".tif"),
        says=("shorter name",),
        setup=with_input(),
    ),
    Case(
        "out_name_near_the_limit",
        OK,
        argv=run("{C}/" + "y" * 250 + ".tif"),
        setup=with_input(),
        check=_exists("y" * 250 + ".tif"),
    ),
    Case(
        "out_is_a_folder",
        ERROR,
        argv=run("{C}/dir.tif"),
        says=("is a folder",),
        setup=with_input(lambda c: (c / "dir.tif").mkdir()),
    ),
    Case("out_jpg_refused", ERROR, argv=run("{C}/out.jpg"), says=(".jpg", ".tif"), setup=with_input()),
    Case(
        "out_ome_zarr_streamed",
        OK,
        argv=run("{C}/out.ome.zarr"),
        setup=with_input(),
        check=_exists("out.ome.zarr/.zattrs"),
    ),
    Case("out_without_extension", ERROR, argv=run("{C}/result"), says=("no extension",), setup=with_input()),
    Case(
        "out_png_mask", OK, argv=run("{C}/mask.png"), setup=with_input(), check=_exists("mask.png", png=True)
    ),
    Case(
        "out_png_of_floats_refused",
        ERROR,
        argv=run("{C}/out.png", bundle="{M}/models/tf_clean", image="{M}/inputs/random.npy"),
        says=("PNG holds",),
        check=_absent("out.png"),
    ),
    Case("out_npy", OK, argv=run("{C}/out.npy"), setup=with_input(), check=_exists("out.npy", npy=True)),
    Case(
        "out_uppercase_extension", OK, argv=run("{C}/OUT.TIF"), setup=with_input(), check=_exists("OUT.TIF")
    ),
    Case(
        "out_replaces_previous_result",
        OK,
        argv=run("{C}/out.tif"),
        setup=with_input(_file("out.tif")),
        may_change=("{C}/out.tif",),
        check=_exists("out.tif"),
    ),
    Case(
        "out_in_new_nested_folders",
        OK,
        argv=run("{C}/a/b/c/out.tif"),
        setup=with_input(),
        check=_exists("a/b/c/out.tif"),
    ),
    Case(
        "out_disk_full",
        ERROR,
        argv=run("{C}/disk/out.npy", bundle="{M}/models/tf_clean", image="{C}/big.npy"),
        says=("not enough free disk space",),
        setup=_tmpfs("1m"),
        teardown=_unmount,
        requires=_mountable,
    ),
    Case(
        "out_read_only_file_system",
        ERROR,
        argv=run("{C}/disk/out.tif"),
        says=("cannot write",),
        setup=_tmpfs("1m", readonly=True),
        teardown=_unmount,
        requires=_mountable,
    ),
    Case(
        "out_write_fails_midway",
        ERROR,
        python=(
            "import resource\n"
            "from deepimagej.cli import main\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (300000, resource.RLIM_INFINITY))\n"
            "main(['run', '{M}/models/tf_clean', '{C}/big.npy', '-o', '{C}/out.npy'])\n"
        ),
        says=("out.npy",),
        setup=_big_input,
    ),
    Case(
        "build_over_its_own_weights",
        ERROR,
        argv=("build", "{C}/work/model.h5", "--out", "{C}/work", "--overwrite"),
        says=("holds an input",),
        setup=_weights_copy,
    ),
    Case(
        "build_over_a_user_folder",
        ERROR,
        argv=("build", "{M}/inputs/pancreatic/model.h5", "--out", "{C}/docs", "--overwrite"),
        says=("not a previous result",),
        setup=_user_folder,
    ),
    Case(
        "build_over_a_file",
        ERROR,
        argv=("build", "{M}/inputs/pancreatic/model.h5", "--out", "{C}/afile", "--overwrite"),
        says=("is a file",),
        setup=lambda c, m: _file("afile")(c),
    ),
    Case(
        "python_write_under_a_file",
        ERROR,
        python=(
            "import numpy as np\n"
            "from deepimagej.io import write_image\n"
            "write_image('{C}/afile/x.tif', np.zeros((4, 4), np.uint8))\n"
        ),
        says=("is a file",),
        setup=lambda c, m: _file("afile")(c),
    ),
    Case(
        "python_write_complex",
        ERROR,
        python=(
            "import numpy as np\n"
            "from deepimagej.io import write_image\n"
            "write_image('{C}/x.tif', np.zeros((4, 4), np.complex64))\n"
        ),
        says=("complex",),
        check=_absent("x.tif"),
    ),
]
