"""The dialogs of the DeepImageJ and U-Net commands, as data: one description, two ImageJs.

A :class:`Dialog` lists its fields (label = macro key, kind, default, choices). The embedded
ImageJ shows it as an ImageJ ``GenericDialog`` through JPype (:func:`show`); the plugin jar in
a user's own ImageJ/Fiji receives it as JSON from the Python worker (:meth:`Dialog.to_json`) and
builds the same ``GenericDialog`` in Java. Either way the field labels are the macro keys, so
the line ImageJ's Recorder writes is one the command reads back, and :meth:`Dialog.options`
turns the values into that same macro-options string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepimagej.errors import MacroError
from deepimagej.imagej.commands.options import (
    BUNDLE_OWN,
    FORMAT_CHOICES,
    LOGGING_CHOICES,
    THIS_COMPUTER,
    parse_options,
)

KINDS = ("choice", "string", "number", "checkbox", "message")


def macro_key(label: str) -> str:
    """The macro key ImageJ derives from a field label (``Macro.trimKey``): first word, lower case."""
    return label.split(" ", 1)[0].split(":", 1)[0].lower()


@dataclass(frozen=True)
class Field:
    """One field of a dialog.

    Attributes:
        kind: ``choice``, ``string``, ``number``, ``checkbox`` or ``message`` (text only).
        label: the label, whose first word (lower case) is the macro key; the text of a message.
        default: the initial value.
        choices: the items of a choice.
        columns: the width of a string field; the digits of a number (0: an integer).
    """

    kind: str
    label: str
    default: str | float | bool = ""
    choices: tuple[str, ...] = ()
    columns: int = 30

    @property
    def key(self) -> str:
        return macro_key(self.label)


@dataclass(frozen=True)
class Dialog:
    """A command's dialog: a title and its fields, in order."""

    title: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    @property
    def inputs(self) -> tuple[Field, ...]:
        """The fields that hold a value (every field but messages)."""
        return tuple(f for f in self.fields if f.kind != "message")

    def to_json(self) -> dict[str, Any]:
        """The description the plugin jar builds its ``GenericDialog`` from."""
        return {
            "title": self.title,
            "fields": [
                {
                    "kind": f.kind,
                    "label": f.label,
                    "default": f.default,
                    "choices": list(f.choices),
                    "columns": f.columns,
                }
                for f in self.fields
            ],
        }

    def typed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values by macro key, typed: numbers with 0 digits as int, others float; strings stripped.

        ``values`` may be keyed by label or by macro key; missing ones take their default.

        Raises:
            MacroError: a choice that is not one of the field's items, or a number that is not one.
        """
        by_key = {macro_key(str(k)): v for k, v in values.items()}
        out: dict[str, Any] = {}
        for f in self.inputs:
            value = by_key.get(f.key, f.default)
            if f.kind == "number":
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise MacroError(f"{self.title}: {f.key}={value} is not a number") from None
                out[f.key] = round(number) if f.columns == 0 else number
            elif f.kind == "checkbox":
                out[f.key] = (
                    value if isinstance(value, bool) else str(value).lower() not in ("false", "0", "")
                )
            elif f.kind == "choice":
                if str(value) not in f.choices:
                    raise MacroError(
                        f"{self.title}: '{value}' is not a valid choice for {f.label}; "
                        f"use one of: {', '.join(f.choices)}"
                    )
                out[f.key] = str(value)
            else:
                out[f.key] = str(value).strip()
        return out

    def options(self, values: Mapping[str, Any]) -> str:
        """The macro-options string of these values, as ImageJ's Recorder writes it for the dialog."""
        parts = []
        for key, value in self.typed(values).items():
            if isinstance(value, bool):
                if value:
                    parts.append(key)
            elif isinstance(value, (int, float)):
                parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
            else:
                parts.append(f"{key}=[{value}]")
        return " ".join(parts)

    def values_from_options(self, options: str | None) -> dict[str, Any]:
        """What an ImageJ ``GenericDialog`` reads from a macro-options string: typed values by key.

        A checkbox is true when its key is present; other missing keys take their default.
        """
        raw = {k.lower(): v for k, v in parse_options(options).items()}
        values: dict[str, Any] = {}
        for f in self.inputs:
            if f.kind == "checkbox":
                values[f.key] = f.key in raw
            elif f.key in raw:
                values[f.key] = raw[f.key]
        return self.typed(values)


# ---------------------------------------------------------------- the commands' dialogs
RUN_HELP = (
    "Pre/Postprocessing: the bundle's own macros, 'no preprocessing' / 'no postprocessing', or macro\n"
    "file names of the bundle (comma-separated). Tile: patch size per axis, e.g. 256,256 (empty: automatic)."
)
HOST_HELP = (
    "\nHost: run the model on a server (deepimagej remote add NAME user@server); Detach: do not wait,\n"
    "'DeepImageJ Jobs' opens the result when it is done."
)


def run_dialog(models: Sequence[str], hosts: Sequence[str] = (THIS_COMPUTER,)) -> Dialog:
    """ "DeepImageJ Run": the installed models (folder names), format, macros, tile, logging, where to run."""
    hosts = tuple(hosts) or (THIS_COMPUTER,)
    return Dialog(
        "DeepImageJ Run",
        (
            Field("choice", "Model", models[0] if models else "", tuple(models)),
            Field("choice", "Format", FORMAT_CHOICES[0], FORMAT_CHOICES),
            Field("string", "Preprocessing", BUNDLE_OWN, columns=30),
            Field("string", "Postprocessing", BUNDLE_OWN, columns=30),
            Field("string", "Tile", "", columns=12),
            Field("choice", "Logging", LOGGING_CHOICES[0], LOGGING_CHOICES),
            *_host_fields(hosts),
            Field("message", RUN_HELP + (HOST_HELP if len(hosts) > 1 else "")),
        ),
    )


def _host_fields(hosts: tuple[str, ...]) -> tuple[Field, ...]:
    """ "Host" and "Detach", when servers are set up (``deepimagej remote add``); none otherwise."""
    if len(hosts) < 2:
        return ()
    return (Field("choice", "Host", hosts[0], hosts), Field("checkbox", "Detach", False))


#: "DeepImageJ Build Bundled Model": (label = macro key, hint); all text, empty = not given
BUILD_FIELDS = (
    ("Weights", "model.h5 or SavedModel folder"),
    ("Output", "bundle folder to write"),
    ("Name", "model name"),
    ("Axes", "input axes, e.g. yx or yxc"),
    ("Example", "example image (its result is computed)"),
    ("Preprocessing", "ImageJ macro file(s), comma-separated"),
    ("Postprocessing", "ImageJ macro file(s), comma-separated"),
    ("Config", "DeepImageJ config.xml template"),
    ("Rdf", "bioimage.io rdf.yaml template"),
    ("Tile", "patch size (empty: from the model)"),
    ("Halo", "halo in pixels (empty: from the model)"),
    ("Min", "minimum size (empty: from the model)"),
)


def build_dialog() -> Dialog:
    """ "DeepImageJ Build Bundled Model": weights, output folder and the bundle's settings."""
    fields = [Field("string", label, "", columns=30) for label, _hint in BUILD_FIELDS]
    fields.append(Field("message", "\n".join(f"{label}: {hint}" for label, hint in BUILD_FIELDS)))
    return Dialog("DeepImageJ Build Bundled Model", tuple(fields))


DATA_CHOICES = ("current image + ROI Manager", "folders")
TASK_CHOICES = ("auto", "segmentation", "detection")


def train_dialog(hosts: Sequence[str] = (THIS_COMPUTER,)) -> Dialog:
    """ "U-Net Train": training data, task, output bundle, training settings, classes, where to train."""
    hosts = tuple(hosts) or (THIS_COMPUTER,)
    return Dialog(
        "U-Net Train",
        (
            Field("choice", "Data", DATA_CHOICES[0], DATA_CHOICES),
            Field("string", "Images", "", columns=30),
            Field("string", "Annotations", "", columns=30),
            Field("choice", "Task", TASK_CHOICES[0], TASK_CHOICES),
            Field("string", "Output", str(Path.home() / ".deepimagej" / "models" / "my-unet"), columns=30),
            Field("string", "Name", "", columns=20),
            Field("string", "From", "", columns=20),
            Field("number", "Epochs", 10, columns=0),
            Field("number", "Steps", 50, columns=0),
            Field("number", "Tile", 256, columns=0),
            Field("number", "Depth", 3, columns=0),
            Field("number", "Features", 16, columns=0),
            Field("number", "Learning_rate", 0.001, columns=5),
            Field("number", "Radius", 3, columns=1),
            Field("number", "Classes", 2, columns=0),
            Field("string", "Class_names", "", columns=30),
            Field("string", "Ignore_label", "", columns=6),
            Field("string", "Element_size", "", columns=12),
            *_host_fields(hosts),
            Field(
                "message",
                "Images/Annotations: folders, for Data = folders. From: a bundle to fine-tune (name or "
                "folder).\nRadius: detection disk radius (px). Output: the bundle folder to write.\n"
                "Classes: with the background; > 2: label values or ROI names (Class_names, comma-separated) "
                "are\nclasses. ROIs named 'ignore' and the Ignore_label value do not count. Element_size: the "
                "model's\npixel size in micrometres (default: the current image's calibration)."
                + (
                    "\nHost: train on a server (deepimagej remote add NAME user@server); Detach: do not "
                    "wait,\n'DeepImageJ Jobs' installs the bundle when it is done."
                    if len(hosts) > 1
                    else ""
                ),
            ),
        ),
    )


def install_dialog(models_folder: Path) -> Dialog:
    """ "DeepImageJ Install Model": a bundle (.zip or folder) and the models folder it goes to."""
    return Dialog(
        "DeepImageJ Install Model",
        (
            Field("string", "Source", "", columns=40),
            Field("string", "Models", str(models_folder), columns=40),
            Field(
                "message",
                "Source: a DeepImageJ / bioimage.io bundle, as a .zip file or a folder.\n"
                "Models: the models folder DeepImageJ Run lists models from.",
            ),
        ),
    )


JOB_ACTIONS = ("refresh", "fetch", "cancel", "log")


def jobs_dialog(jobs: Sequence[tuple[str, str]]) -> Dialog:
    """ "DeepImageJ Jobs": which job (``(label, state)``, oldest first; the newest is offered first), what to do.

    A job's label starts with its ID and a colon; the command reads the ID before the colon.
    """
    labels = tuple(label for label, _state in reversed(jobs))
    newest_done = bool(jobs) and jobs[-1][1] == "done"
    return Dialog(
        "DeepImageJ Jobs",
        (
            Field("choice", "Job", labels[0] if labels else "", labels),
            Field("choice", "Action", "fetch" if newest_done else JOB_ACTIONS[0], JOB_ACTIONS),
            Field(
                "message",
                "fetch: open a run's result / install a training's bundle (done jobs); cancel: stop a job;\n"
                "log: the job's log into the Log window; refresh: ask the servers again.",
            ),
        ),
    )


def show(dialog: Dialog) -> dict[str, Any] | None:
    """Show ``dialog`` as an ImageJ ``GenericDialog`` in the embedded ImageJ; typed values, or None if cancelled.

    Called from a macro with options, the ``GenericDialog`` reads them instead of showing itself.
    """
    from deepimagej.imagej.java_classes import jc

    gd = jc.GenericDialog(dialog.title)
    for f in dialog.fields:
        if f.kind == "choice":
            gd.addChoice(f.label, list(f.choices), str(f.default))
        elif f.kind == "string":
            gd.addStringField(f.label, str(f.default), f.columns)
        elif f.kind == "number":
            gd.addNumericField(f.label, float(f.default), f.columns)
        elif f.kind == "checkbox":
            gd.addCheckbox(f.label, bool(f.default))
        else:
            gd.addMessage(f.label)
    gd.showDialog()
    if gd.wasCanceled():
        return None
    values: dict[str, Any] = {}
    for f in dialog.inputs:
        if f.kind == "choice":
            values[f.key] = str(gd.getNextChoice())
        elif f.kind == "string":
            values[f.key] = str(gd.getNextString())
        elif f.kind == "number":
            values[f.key] = float(gd.getNextNumber())
        else:
            values[f.key] = bool(gd.getNextBoolean())
    return dialog.typed(values)
