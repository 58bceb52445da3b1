"""Start the Java virtual machine with ImageJ 1.x and the DeepImageJ shim on the class path.

JPype can start one JVM per process; :func:`start_jvm` is idempotent. scyjava is told never
to download a Java runtime. ``ij.jar`` is looked up in this order: ``$DEEPIMAGEJ_IJ_JAR``, a
Fiji.app given by the caller or ``$FIJI_HOME``, Debian's ``/usr/share/java/ij.jar``.

Python keeps its signals: the JVM starts with ``-Xrs`` and without JPype's Ctrl-C handler,
so SIGINT/SIGTERM reach Python's handlers (Ctrl-C is a ``KeyboardInterrupt``, the command
line stops cleanly) rather than ending the process from inside Java. Java 18 to 23 are
started with ``-Djava.security.manager=allow`` so that a bundle's macros can be confined
(see ``deepimagej.ij.Confinement``); Java 24 and later allow no security manager at all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from deepimagej.errors import ImageJError

DEBIAN_IJ_JAR = Path("/usr/share/java/ij.jar")
DEFAULT_MAX_MEMORY = "4g"

_started = False


def _fiji_ij_jar(fiji: Path) -> Path | None:
    jars = sorted((fiji / "jars").glob("ij-1.*.jar")) + sorted((fiji / "jars").glob("ij.jar"))
    return jars[-1] if jars else None


def find_ij_jar(fiji: str | Path | None = None) -> Path:
    """Locate ImageJ 1.x's ``ij.jar``.

    Raises:
        ImageJError: none found (the message says how to install one).
    """
    tried: list[str] = []
    env = os.environ.get("DEEPIMAGEJ_IJ_JAR")
    if env:
        if Path(env).is_file():
            return Path(env)
        tried.append(f"$DEEPIMAGEJ_IJ_JAR={env} (missing)")
    for cand in (fiji, os.environ.get("FIJI_HOME")):
        if cand:
            jar = _fiji_ij_jar(Path(cand))
            if jar is not None:
                return jar
            tried.append(f"{cand}/jars/ij-*.jar")
    if DEBIAN_IJ_JAR.is_file():
        return DEBIAN_IJ_JAR
    tried.append(str(DEBIAN_IJ_JAR))
    raise ImageJError(
        "ImageJ (ij.jar) not found; tried " + ", ".join(tried) + ". Install it "
        "(Debian/Ubuntu: sudo apt-get install libij-java) or set DEEPIMAGEJ_IJ_JAR to the path of ij.jar."
    )


def java_major_version() -> int | None:
    """The major version of the Java runtime JPype will start (from its ``release`` file), or ``None``."""
    try:
        import jpype

        libjvm = Path(jpype.getDefaultJVMPath())
    except Exception:  # noqa: BLE001 - JPype raises JVMNotFoundException and others when there is no Java
        return None
    for home in libjvm.parents:
        release = home / "release"
        if release.is_file():
            m = re.search(r'^JAVA_VERSION="(?:1\.)?(\d+)', release.read_text(errors="replace"), re.MULTILINE)
            return int(m.group(1)) if m else None
    return None


def jvm_started() -> bool:
    try:
        import jpype
    except ImportError:
        return False
    return bool(jpype.isJVMStarted())


def start_jvm(class_path: list[Path], max_memory: str | None = None) -> None:
    """Start the JVM (once) with ``class_path``; the display must already be in ``$DISPLAY``.

    Raises:
        ImageJError: no Java runtime, or a JVM already running without ImageJ.
    """
    global _started
    # the registry raises ImageJError (how to install it) without scyjava, the `imagej` extra; it
    # is imported here, not at the top, because find_ij_jar serves the ImageJ plugin without it
    from deepimagej.imagej.java_classes import jc

    if jvm_started():
        if jc.IJ is None:
            raise ImageJError(
                "a Java VM is already running in this Python process without ImageJ on its class path; "
                "start deepimagej.imagej before anything else that starts Java"
            )
        _started = True
        return
    import scyjava

    scyjava.config.set_java_constraints(fetch="never")
    for entry in class_path:
        scyjava.config.add_classpath(str(entry))
    scyjava.config.add_option(f"-Xmx{max_memory or DEFAULT_MAX_MEMORY}")
    scyjava.config.add_option("-Djava.awt.headless=false")
    scyjava.config.add_option("-Xrs")  # SIGINT/SIGTERM stay Python's
    scyjava.config.add_kwargs(interrupt=False)
    version = java_major_version()
    if version is not None and 18 <= version <= 23:  # 17 and earlier allow it by default, 24+ never
        scyjava.config.add_option("-Djava.security.manager=allow")
    try:
        scyjava.start_jvm()
    except Exception as exc:  # noqa: BLE001 - JPype raises several unrelated types here
        raise ImageJError(
            f"could not start Java ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Install a Java runtime >= 11 (Debian/Ubuntu: sudo apt-get install default-jre-headless) "
            "or set JAVA_HOME."
        ) from None
    _started = True
