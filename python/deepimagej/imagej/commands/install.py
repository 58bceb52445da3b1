""" "DeepImageJ Install Model": a bundle (.zip or folder) into the models folder, checked and described.

Options (macro-recordable): ``source=[/path/model.zip] models=[/path/models]``. Clicked from the
menu, the dialog asks for both. The same steps serve the plugin jar's worker
(:func:`install_values`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepimagej.errors import MacroError
from deepimagej.imagej.commands.dialogs import install_dialog, show
from deepimagej.imagej.commands.explore import model_info
from deepimagej.imagej.models import install_model
from deepimagej.paths import USER_MODELS


def install_values(values: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Install the bundle the dialog's values name; the installed bundle and the lines for the Log.

    Raises:
        MacroError: no source given.
        BundleError: the bundle is unsafe or invalid (nothing is left in the models folder).
    """
    if not values["source"]:
        raise MacroError("DeepImageJ Install Model needs source=[bundle .zip or folder]")
    spec = install_model(values["source"], values["models"] or None)
    return spec, [f"[DeepImageJ] installed '{spec.name}' in {spec.root}", model_info(spec)]


def install_command(ij: Any, options: str | None) -> None:
    """The "DeepImageJ Install Model" command (a dialog without options); called from the Java shim."""
    from deepimagej.imagej.java_classes import jc

    dialog = install_dialog(USER_MODELS)
    values = dialog.values_from_options(options) if (options or "").strip() else show(dialog)
    if values is None:  # canceled
        return
    _, lines = install_values(values)
    for line in lines:
        jc.IJ.log(line)
