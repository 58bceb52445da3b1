"""A real Fiji (ImageJ2) through PyImageJ: the path for users who have Fiji.app.

Not used by the embedded path and not importable without ``pyimagej``; Fiji cannot be
downloaded on the build machines, so this module is documented but not tested there.

>>> import imagej                                                       # doctest: +SKIP
>>> fiji = imagej.init("/opt/Fiji.app", mode="interactive")             # doctest: +SKIP
>>> from deepimagej.imagej.fiji import attach; ij = attach(fiji)        # doctest: +SKIP

``attach`` builds the Java shim against Fiji's ``ij-1.x.jar``, loads it into the running
JVM's class path and registers the DeepImageJ commands in Fiji's ImageJ 1.x layer, so the
same ``run("DeepImageJ Run", ...)`` macros work in Fiji's menus and Script Editor.
"""

from __future__ import annotations

from typing import Any

from deepimagej.errors import ImageJError


def attach(gateway: Any) -> Any:
    """Register the DeepImageJ commands in a Fiji started with ``imagej.init(...)``."""
    import jpype

    from deepimagej.imagej import session, shim
    from deepimagej.imagej.jvm import find_ij_jar, jvm_started

    if not jvm_started():
        raise ImageJError("Fiji is not running in this Python process: start it with imagej.init(...) first")
    app_dir = str(gateway.getApp().getBaseDirectory()) if hasattr(gateway, "getApp") else None
    jar = shim.find_jar() or shim.build(find_ij_jar(app_dir))
    jpype.addClassPath(str(jar))
    if session._session is None:
        session._session = session.ImageJ(display="", timeout=session.DEFAULT_TIMEOUT_S)
    return session._session


def _session() -> Any:
    from deepimagej.imagej import session

    if session._session is None:
        raise ImageJError(
            "deepimagej is not attached to this Fiji: call deepimagej.imagej.fiji.attach(ij) first"
        )
    return session._session


def run_in_fiji(model: str, imp: Any, preprocessing: str = "", postprocessing: str = "") -> Any:
    """Run a bundle on ``imp`` with its macros in Fiji; returns the result ImagePlus."""
    opts = ""
    if preprocessing and preprocessing != "bundle's own":
        opts += f" preprocessing=[{preprocessing}]"
    if postprocessing and postprocessing != "bundle's own":
        opts += f" postprocessing=[{postprocessing}]"
    return _session().run_bundle(model, imp, opts).imageplus


def explore_in_fiji(model: str = "", apply: bool = False) -> str:
    """The "DeepImageJ Explore" command; returns what it logged."""
    opts = f"model=[{model}]" if model else ""
    if apply:
        opts += " apply"
    return _session().run_macro(f'run("DeepImageJ Explore", "{opts}");').log


def train_in_fiji(options: str = "") -> str:
    """The "U-Net Train" command (a dialog when ``options`` is empty); returns what it logged.

    Args:
        options: the command's macro options, e.g.
            ``"data=folders images=/data/imgs annotations=/data/masks output=/data/my-unet"``.
    """
    opts = options.replace('"', "'")
    return _session().run_macro(f'run("U-Net Train", "{opts}");' if opts else 'run("U-Net Train");').log
