"""Parse ImageJ macro option strings (``key=value key=[value with spaces]``) and DeepImageJ options."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepimagej.bundle.formats import WEIGHT_FORMATS, normalize_format
from deepimagej.errors import InputImageError

NO_PROCESSING = ("", "no preprocessing", "no postprocessing", "none", "no")
#: what the Run dialog offers (and records): "default" picks the bundle's first runnable weights
FORMAT_CHOICES = ("default", "Tensorflow", "Keras", "ONNX", "Pytorch")
LOGGING_CHOICES = ("normal", "verbose", "none")
#: pre/post-processing value meaning "the bundle's own macros" (as if the key were absent)
BUNDLE_OWN = "bundle's own"
#: the "host" choice that runs a command in this ImageJ (any other is a server of ``deepimagej remote``)
THIS_COMPUTER = "this computer"


def parse_options(options: str | None) -> dict[str, str]:
    """``"model=[U-Net x] tile=256,256 flag"`` -> ``{"model": "U-Net x", "tile": "256,256", "flag": ""}``.

    Brackets nest (``preprocessing=[[a.ijm, b.ijm]]`` gives ``"[a.ijm, b.ijm]"``); keys keep their case.
    """
    out: dict[str, str] = {}
    text = options or ""
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        if not key:
            i += 1
            continue
        if i < n and text[i] == "=":
            i += 1
            if i < n and text[i] == "[":
                depth, j = 0, i
                while j < n:
                    if text[j] == "[":
                        depth += 1
                    elif text[j] == "]":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                out[key] = text[i + 1 : j]
                i = j + 1
            else:
                start = i
                while i < n and not text[i].isspace():
                    i += 1
                out[key] = text[start:i]
        else:
            out[key] = ""
    return out


def split_list(value: str) -> list[str]:
    """``"[a.ijm, b.ijm]"`` or ``"a.ijm,b.ijm"`` or ``"a.ijm"`` -> ``["a.ijm", "b.ijm"]``."""
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass
class RunOptions:
    """The options of "DeepImageJ Run" in either syntax.

    DeepImageJ 1.x/2.x: ``model=[...] format=Tensorflow preprocessing=[...] postprocessing=[...]
    axes=Y,X,C tile=256,256,1 logging=Normal``; 3.x: ``modelPath=... inputPath=...
    outputFolder=... displayOutput=all|null``.
    """

    model: str
    weights_format: str | None = None
    preprocessing: list[str] | None = None  # None: the bundle's own; []: none
    postprocessing: list[str] | None = None
    axes: str | None = None
    tile: dict[str, int] = field(default_factory=dict)
    logging: str = "normal"
    input_path: str | None = None
    output_folder: str | None = None
    display_output: bool = True
    host: str | None = None  # a server of deepimagej.remote; None: this computer
    detach: bool = False  # with host: return once the job runs (DeepImageJ Jobs fetches the result)
    inputs: dict[str, str] = field(
        default_factory=dict
    )  # model input name -> image title (input_NAME=[title])

    @classmethod
    def parse(cls, options: str | None) -> RunOptions:
        raw = parse_options(options)
        low = {k.lower(): v for k, v in raw.items()}
        model = low.get("model") or low.get("modelpath") or ""
        if not model.strip():
            raise InputImageError('DeepImageJ Run needs a model: run("DeepImageJ Run", "model=[name] ...")')
        fmt = low.get("format")
        weights_format = None
        if fmt and fmt.strip().lower() != "default":
            weights_format = normalize_format(fmt)  # "Pytorch" is TorchScript, as in DeepImageJ
            if weights_format not in WEIGHT_FORMATS:
                raise InputImageError(f"unknown format={fmt}; use one of Tensorflow, Pytorch, ONNX, Keras")
        opts = cls(model=model.strip(), weights_format=weights_format)
        for stage in ("preprocessing", "postprocessing"):
            if stage in low and low[stage].strip().lower() != BUNDLE_OWN:
                value = low[stage].strip()
                setattr(opts, stage, [] if value.lower() in NO_PROCESSING else split_list(value))
        if low.get("axes"):
            opts.axes = "".join(a.strip().lower() for a in low["axes"].split(",") if a.strip())
            opts.axes = opts.axes.replace("n", "b")
        if low.get("tile"):
            sizes = [s.strip() for s in low["tile"].split(",") if s.strip()]
            axes = opts.axes or ("yx" if len(sizes) == 2 else "yxc" if len(sizes) == 3 else "")
            if len(axes) != len(sizes):
                raise InputImageError(
                    f"tile={low['tile']} gives {len(sizes)} sizes but axes={low.get('axes', '?')}"
                )
            try:
                opts.tile = {a: int(s) for a, s in zip(axes, sizes) if a in "zyx"}
            except ValueError:
                raise InputImageError(f"tile={low['tile']} must be integers separated by commas") from None
        opts.logging = (low.get("logging") or "normal").strip().lower()
        opts.input_path = low.get("inputpath") or None
        opts.output_folder = low.get("outputfolder") or None
        display = (low.get("displayoutput") or "all").strip().lower()
        opts.display_output = display not in ("null", "false", "no", "none")
        host = (low.get("host") or "").strip()
        opts.host = host if host and host != THIS_COMPUTER else None
        opts.detach = "detach" in low
        opts.inputs = {
            k[len("input_") :]: v.strip()
            for k, v in raw.items()
            if k.lower().startswith("input_") and len(k) > len("input_")
        }
        return opts
