"""ImageJ inside deepimagej: the only package that touches Java.

:func:`start` starts an embedded ImageJ 1.x (scyjava/JPype, a private Xvfb when there is no
display) with the DeepImageJ commands registered, so that macros can call
``run("DeepImageJ Run", "model=[...] ...")`` and bundles' own ``preprocessing.txt`` /
``postprocessing.txt`` run natively. See :class:`~deepimagej.imagej.session.ImageJ` for
``open``, ``show``, ``run_macro``; :func:`~deepimagej.imagej.macro.run_bundle_macro` runs a
bundle's macro confined (or trusted); :mod:`~deepimagej.imagej.convert` for numpy/xarray <->
ImagePlus. Submodules are imported lazily (``python -m deepimagej.imagej.shim`` stays light).
"""

from __future__ import annotations

from typing import Any

from deepimagej.errors import ImageJError, MacroError

_LAZY = {
    "start": ("deepimagej.imagej.session", "start"),
    "ImageJ": ("deepimagej.imagej.session", "ImageJ"),
    "MacroResult": ("deepimagej.imagej.macro", "MacroResult"),
    "interactive_calls": ("deepimagej.imagej.macro", "interactive_calls"),
    "run_bundle_macro": ("deepimagej.imagej.macro", "run_bundle_macro"),
    "to_imageplus": ("deepimagej.imagej.convert", "to_imageplus"),
    "from_imageplus": ("deepimagej.imagej.convert", "from_imageplus"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'deepimagej.imagej' has no attribute {name!r}")


__all__ = [
    "ImageJ",
    "ImageJError",
    "MacroError",
    "MacroResult",
    "from_imageplus",
    "interactive_calls",
    "run_bundle_macro",
    "start",
    "to_imageplus",
]
