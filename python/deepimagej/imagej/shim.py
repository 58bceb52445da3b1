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
from pathlib import Path

from deepimagej.errors import ImageJError

JAVA_DIR = Path(__file__).with_name("java")
JAVA_RELEASE = "11"


def sources() -> list[Path]:
    """The shim's Java sources."""
    return sorted(JAVA_DIR.rglob("*.java"))


def _source_hash() -> str:
    h = hashlib.sha256()
    for src in sources():
        h.update(src.relative_to(JAVA_DIR).as_posix().encode())
        h.update(src.read_bytes())
    return h.hexdigest()[:12]


def _candidate_dirs() -> list[Path]:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepimagej"
    return [JAVA_DIR / "build", cache]


def jar_name() -> str:
    return f"deepimagej-ij-shim-{_source_hash()}.jar"


def find_jar() -> Path | None:
    """The already built jar for the current sources, if any."""
    name = jar_name()
    for d in _candidate_dirs():
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


def build(ij_jar: Path, force: bool = False) -> Path:
    """Compile the sources against ``ij_jar`` and return the jar (reused when up to date).

    Raises:
        ImageJError: no javac, a compile error, or no writable output folder.
    """
    existing = None if force else find_jar()
    if existing is not None:
        return existing
    javac = _javac()
    with tempfile.TemporaryDirectory(prefix="deepimagej-shim-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        cmd = [javac, "--release", JAVA_RELEASE, "-nowarn", "-cp", str(ij_jar), "-d", str(classes)]
        proc = subprocess.run(cmd + [str(s) for s in sources()], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageJError(f"compiling the DeepImageJ Java shim failed:\n{proc.stderr.strip()}")
        errors = []
        for out_dir in _candidate_dirs():
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                target = out_dir / jar_name()
                partial = target.with_suffix(f".{os.getpid()}.tmp")
                with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
                    zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: deepimagej\n")
                    for cls in sorted(classes.rglob("*.class")):
                        zf.write(cls, cls.relative_to(classes).as_posix())
                partial.replace(target)  # atomic: concurrent builders never see half a jar
                for old in out_dir.glob("deepimagej-ij-shim-*.jar"):
                    if old != target:
                        old.unlink(missing_ok=True)
                return target
            except OSError as exc:
                errors.append(f"{out_dir}: {exc}")
        raise ImageJError("no writable folder for the DeepImageJ Java shim: " + "; ".join(errors))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepimagej.imagej.shim", description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="compile the Java shim (if out of date)")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--ij-jar", type=Path, default=None, help="ij.jar to compile against")
    args = parser.parse_args(argv)
    from deepimagej.imagej.jvm import find_ij_jar

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
