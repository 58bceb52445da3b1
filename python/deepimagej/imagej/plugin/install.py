"""``deepimagej install-plugin /path/to/ImageJ-or-Fiji``: the plugin jar into a user's own ImageJ.

The jar is compiled from ``imagej/plugin/java`` against ImageJ 1.x (``javac --release 11``, the
shim's :func:`~deepimagej.imagej.shim.compile_jar`; no binary is committed), with its
``plugins.config`` (menus Plugins › DeepImageJ and Plugins › U-Net) and the package version and
protocol it speaks. Installing copies it into ImageJ's ``plugins`` folder as
:data:`PLUGIN_JAR` and writes :data:`CONFIG_NAME` next to it: the command that starts the
worker with *this* Python environment (this interpreter, this package)::

    {"protocol": 1, "version": "0.1.0", "python": "/home/me/.venv/bin/python",
     "command": ["/home/me/.venv/bin/python", "-m", "deepimagej.imagej.plugin.worker"],
     "env": {"PYTHONPATH": "/home/me/deepimagej/python"}}
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import deepimagej
from deepimagej.errors import ImageJError, OutputError
from deepimagej.imagej import jvm, shim
from deepimagej.imagej.plugin.protocol import PROTOCOL
from deepimagej.outputs import atomic_file, write_text_atomic
from deepimagej.paths import config_dir

JAVA_DIR = Path(__file__).with_name("java")
PLUGINS_CONFIG = JAVA_DIR / "plugins.config"
#: the jar's name in ImageJ's plugins folder (ImageJ reads the plugins.config of jars with "_" in their name)
PLUGIN_JAR = "DeepImageJ_Python.jar"
#: the worker's configuration, next to the jar (the plugin looks for it there)
CONFIG_NAME = "DeepImageJ_Python.json"
PACKAGE_ROOT = Path(deepimagej.__file__).resolve().parents[1]


def _resources() -> dict[str, bytes]:
    props = f"version={deepimagej.__version__}\nprotocol={PROTOCOL}\n".encode()
    return {"plugins.config": PLUGINS_CONFIG.read_bytes(), "deepimagej/plugin/plugin.properties": props}


def jar_name() -> str:
    """The built jar's name: ``DeepImageJ_Python-<hash of sources, menus and version>.jar``."""
    extra = b"".join(k.encode() + v for k, v in sorted(_resources().items()))
    return f"DeepImageJ_Python-{shim.source_hash(JAVA_DIR, extra)}.jar"


def build_jar(ij_jar: Path | None = None, force: bool = False) -> Path:
    """Compile the plugin jar (reused when its sources and version have not changed).

    Raises:
        ImageJError: no ij.jar, no javac, or a compile error.
    """
    name = jar_name()
    if not force:
        for folder in shim.output_dirs(JAVA_DIR):
            if (folder / name).is_file():
                return folder / name
    return shim.compile_jar(
        JAVA_DIR,
        ij_jar or jvm.find_ij_jar(),
        shim.output_dirs(JAVA_DIR),
        name,
        resources=_resources(),
        what="the DeepImageJ plugin jar",
    )


def plugins_folder(imagej: Path) -> Path:
    """ImageJ's ``plugins`` folder: ``imagej/plugins`` (ImageJ, Fiji.app), or ``imagej`` if that is it.

    Raises:
        ImageJError: no plugins folder there.
    """
    imagej = Path(imagej).expanduser()
    if imagej.name == "plugins" and imagej.is_dir():
        return imagej
    if (imagej / "plugins").is_dir():
        return imagej / "plugins"
    raise ImageJError(
        f"{imagej}: not an ImageJ or Fiji folder (it has no 'plugins' folder); give the folder that "
        "contains ImageJ's plugins folder, e.g. /Applications/Fiji.app or ~/ImageJ"
    )


def worker_command() -> list[str]:
    """The command that starts a worker of this Python environment."""
    return [sys.executable, "-m", "deepimagej.imagej.plugin.worker"]


@dataclass
class Installed:
    """What :func:`install_plugin` wrote.

    Attributes:
        jar: the plugin jar in ImageJ's plugins folder.
        config: the worker configuration next to it.
        command: the worker command it records.
        warnings: things the user should know (another DeepImageJ plugin with the same commands).
    """

    jar: Path
    config: Path
    command: list[str]
    warnings: list[str] = field(default_factory=list)


def install_plugin(imagej: str | Path, *, ij_jar: Path | None = None) -> Installed:
    """Install the plugin jar and its worker configuration into an ImageJ or Fiji folder.

    Args:
        imagej: the ImageJ or Fiji folder (the one holding ``plugins``), or its plugins folder.
        ij_jar: the ImageJ 1.x jar to compile against (default: that ImageJ's own, else the system's).

    Raises:
        ImageJError: not an ImageJ folder, a folder that cannot be written, no javac.
    """
    plugins = plugins_folder(Path(imagej))
    jar = build_jar(ij_jar or jvm.find_ij_jar(plugins.parent))
    target = plugins / PLUGIN_JAR
    warnings = [
        f"{other} (the Java DeepImageJ) has commands of the same names; ImageJ uses only one of them: "
        "remove it to use this one"
        for other in sorted(plugins.rglob("*.jar"))
        if other.name.lower().startswith("deepimagej_") and other.name != PLUGIN_JAR
    ]
    config = {
        "protocol": PROTOCOL,
        "version": deepimagej.__version__,
        "python": sys.executable,
        "command": worker_command(),
        "env": {"PYTHONPATH": str(PACKAGE_ROOT)},
    }
    try:
        with atomic_file(target, size_hint=jar.stat().st_size) as tmp:  # ImageJ never sees half a jar
            shutil.copyfile(jar, tmp)
        write_text_atomic(plugins / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    except OutputError as exc:
        raise ImageJError(f"cannot install the plugin into {plugins}: {exc}") from None
    return Installed(target, plugins / CONFIG_NAME, worker_command(), warnings)


def imagej_home(folder: str | Path | None = None) -> tuple[Path, Installed]:
    """ImageJ's home folder for its window, with this package's plugin installed in its ``plugins``.

    The one set-up of ``deepimagej imagej`` and ``deepimagej.imagej.start(show=True)``: ImageJ
    started with ``-Dplugins.dir=HOME`` reads the plugin's ``plugins.config`` into its menus
    (Plugins › DeepImageJ, Plugins › U-Net).

    Args:
        folder: the home folder (created if needed); default: the config folder's ``imagej``.

    Returns:
        The home folder and what :func:`install_plugin` wrote there.

    Raises:
        ImageJError: the folder cannot be written, no javac.
    """
    home = Path(folder or config_dir() / "imagej").expanduser().absolute()
    try:
        (home / "plugins").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageJError(
            f"cannot create ImageJ's folder {home / 'plugins'}: {exc.strerror or exc}"
        ) from None
    return home, install_plugin(home)
