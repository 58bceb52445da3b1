"""Build the small Java shim (``imagej/java/**/*.java``) into a jar, from source.

The shim is three tiny classes compiled against ``ij.jar``: the ImageJ ``PlugIn`` behind the
DeepImageJ menu commands, the interface Python implements to receive them, and bulk pixel
copies. No binary is committed: the jar is built at install time
(``python -m deepimagej.imagej.shim --build``, called by ``scripts/setup.sh``) or on demand
when ImageJ starts. It lands in ``imagej/java/build/`` when that folder is writable, else in
``~/.cache/deepimagej/``; its name carries a hash of the sources so an edit rebuilds it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from deepimagej.errors import ImageJError, OutputError
from deepimagej.outputs import atomic_file

JAVA_DIR = Path(__file__).with_name("java")
JAVA_RELEASE = "11"


def sources() -> list[Path]:
    """The shim's Java sources."""
    return sorted(JAVA_DIR.rglob("*.java"))


def source_hash(source_dir: Path = JAVA_DIR, extra: bytes = b"") -> str:
    """A short hash of the Java sources under ``source_dir`` (and ``extra``): names a jar by its content."""
    h = hashlib.sha256(extra)
    for src in sorted(source_dir.rglob("*.java")):
        h.update(src.relative_to(source_dir).as_posix().encode())
        h.update(src.read_bytes())
    return h.hexdigest()[:12]


def output_dirs(source_dir: Path = JAVA_DIR) -> list[Path]:
    """Where jars built from ``source_dir`` go: its ``build/`` folder when writable, else the user cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepimagej"
    return [source_dir / "build", cache]


def jar_name() -> str:
    return f"deepimagej-ij-shim-{source_hash()}.jar"


def find_jar() -> Path | None:
    """The already built jar for the current sources, if any."""
    name = jar_name()
    for d in output_dirs():
        if (d / name).is_file():
            return d / name
    return None


def _javac() -> str:
    javac = shutil.which("javac")
    if javac is None and os.environ.get("JAVA_HOME"):
        cand = Path(os.environ["JAVA_HOME"]) / "bin" / "javac"
        javac = str(cand) if cand.is_file() else None
    if javac is None:
        raise ImageJError(
            "cannot build the DeepImageJ ImageJ commands: no Java compiler (javac). Install a JDK "
            "(Debian/Ubuntu: sudo apt-get install default-jdk-headless) or set JAVA_HOME."
        )
    return javac


def compile_jar(
    source_dir: Path,
    ij_jar: Path,
    out_dirs: list[Path],
    name: str,
    resources: Mapping[str, bytes] | None = None,
    what: str = "the DeepImageJ Java shim",
) -> Path:
    """Compile every ``*.java`` under ``source_dir`` against ``ij_jar`` into the jar ``name``.

    The jar is written atomically into the first writable folder of ``out_dirs``; other jars
    there with the same prefix (``name`` up to its last ``-``) are removed.

    Args:
        source_dir: the root of the Java package tree.
        ij_jar: ImageJ 1.x, the only class path.
        out_dirs: candidate output folders, in order of preference.
        name: the jar's file name.
        resources: extra files stored in the jar (path inside the jar -> content).
        what: what is built, for error messages.

    Raises:
        ImageJError: no javac, a compile error, or no writable output folder.
    """
    javac = _javac()
    files = sorted(source_dir.rglob("*.java"))
    prefix = name.rsplit("-", 1)[0] + "-"
    with tempfile.TemporaryDirectory(prefix="deepimagej-javac-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        cmd = [
            javac,
            "--release",
            JAVA_RELEASE,
            "-nowarn",
            "-encoding",
            "UTF-8",
            "-cp",
            str(ij_jar),
            "-d",
            str(classes),
        ]
        proc = subprocess.run(cmd + [str(s) for s in files], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageJError(f"compiling {what} failed:\n{proc.stderr.strip()}")
        errors = []
        for out_dir in out_dirs:
            target = out_dir / name
            try:
                # atomic: concurrent builders never see half a jar
                with (
                    atomic_file(target) as partial,
                    zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf,
                ):
                    zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: deepimagej\n")
                    for cls in sorted(classes.rglob("*.class")):
                        zf.write(cls, cls.relative_to(classes).as_posix())
                    for inner, content in (resources or {}).items():
                        zf.writestr(inner, content)
                for old in out_dir.glob(f"{prefix}*.jar"):
                    if old != target:
                        old.unlink(missing_ok=True)
                return target
            except OutputError as exc:  # names the jar and why
                errors.append(str(exc))
            except OSError as exc:  # removing an older jar
                errors.append(f"{out_dir}: {exc}")
        raise ImageJError(f"no writable folder for {what}: " + "; ".join(errors))


def build(ij_jar: Path, force: bool = False) -> Path:
    """Compile the sources against ``ij_jar`` and return the jar (reused when up to date).

    Raises:
        ImageJError: no javac, a compile error, or no writable output folder.
    """
    existing = None if force else find_jar()
    if existing is not None:
        return existing
    return compile_jar(JAVA_DIR, ij_jar, output_dirs(), jar_name())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepimagej.imagej.shim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--build", action="store_true", help="compile the Java shim (if out of date)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--ij-jar", type=Path, default=None, help="ij.jar to compile against")
    args = parser.parse_args(argv)
    from deepimagej.imagej.jvm import find_ij_jar

    jar: Path | None
    try:
        if args.build or args.force:
            jar = build(args.ij_jar or find_ij_jar(), force=args.force)
        else:
            jar = find_jar()
            if jar is None:
                print("Java shim not built; run with --build", file=sys.stderr)
                return 1
    except ImageJError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
