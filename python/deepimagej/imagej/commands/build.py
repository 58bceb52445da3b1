""" "DeepImageJ Build Bundled Model": the developer module: weights + settings -> a tested bundle.

Options: ``weights=[model.h5 or SavedModel folder] output=[bundle folder] name=[..] axes=yx
tile=256 halo=32 min=8 example=[image.tif] preprocessing=[macro.ijm] postprocessing=[macro.ijm]
config=[config.xml template] rdf=[rdf.yaml template]``. The bundle is written by
:func:`deepimagej.export.build_bundle`, which also runs the model on the example image.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from deepimagej.errors import BundleError
from deepimagej.imagej.commands.dialogs import build_dialog, show
from deepimagej.imagej.commands.options import parse_options, split_list


def build_kwargs(options: str | None) -> dict[str, Any]:
    """Macro options -> keyword arguments of ``build_bundle`` (only those it accepts)."""
    from deepimagej.export import build_bundle

    o = {k.lower(): v for k, v in parse_options(options).items()}
    if not o.get("weights") or not o.get("output"):
        raise BundleError("DeepImageJ Build Bundled Model needs weights=[...] and output=[...]")
    kw: dict[str, Any] = {"weights": Path(o["weights"]), "out_dir": Path(o["output"])}
    paths = {"example": "example_image", "config": "config_template", "rdf": "rdf_template"}
    for key, arg in paths.items():
        if o.get(key):
            kw[arg] = Path(o[key])
    for key in ("name", "axes"):
        if o.get(key):
            kw[key] = o[key]
    for key in ("tile", "halo", "min", "step"):
        if o.get(key):
            kw[key] = int(o[key])
    for key in ("preprocessing", "postprocessing"):
        if o.get(key):
            kw[f"{key}_macros"] = [Path(p) for p in split_list(o[key])]
    accepted = inspect.signature(build_bundle).parameters
    unknown = [
        k for k in kw if k not in accepted and not any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    ]
    if unknown and "weights" in unknown:  # positional name differs
        kw[next(iter(accepted))] = kw.pop("weights")
        unknown.remove("weights")
    if unknown:
        raise BundleError(f"build options not supported by this version: {', '.join(unknown)}")
    return kw


def ask_build_options() -> str | None:
    """The "DeepImageJ Build Bundled Model" dialog (clicked from the menu): macro options, or None if cancelled."""
    dialog = build_dialog()
    values = show(dialog)
    return None if values is None else dialog.options(values)


def build_command(ij: Any, options: str | None) -> None:
    """The "DeepImageJ Build Bundled Model" command (a dialog without options); called from the Java shim."""
    from deepimagej.export import build_bundle
    from deepimagej.imagej.java_classes import jc

    if not (options or "").strip():
        options = ask_build_options()
        if options is None:
            return
    spec = build_bundle(**build_kwargs(options))
    jc.IJ.log(f"[DeepImageJ] bundle '{spec.name}' written to {spec.root}")
