""" "DeepImageJ Explore": list installed bundles, show one, apply it to its own example image.

Options (macro-recordable): ``model=[name]`` selects a bundle, ``architecture`` shows its
layers/operations, ``apply`` runs it on its example image (result: the current image).
Without ``model`` the list of installed models goes to a Results-style "DeepImageJ models" table
and the Log.
"""

from __future__ import annotations

from typing import Any

from deepimagej.describe import describe_architecture
from deepimagej.errors import BundleError
from deepimagej.imagej.commands.options import RunOptions, parse_options


def model_info(spec: Any) -> str:
    """A few lines describing a bundle."""
    t_in, t_out = spec.inputs[0], spec.outputs[0]
    lines = [
        f"Model: {spec.name}",
        f"  folder: {spec.root}",
        f"  authors: {', '.join(spec.authors) or '-'}",
        f"  input '{t_in.name}': axes {t_in.axis_names}; output '{t_out.name}': axes {t_out.axis_names}",
        f"  weights: {', '.join(spec.weights) or '-'}",
        f"  pre-processing macros: {', '.join(p.name for p in spec.preprocessing_macros) or '-'}",
        f"  post-processing macros: {', '.join(p.name for p in spec.postprocessing_macros) or '-'}",
        f"  example image: {', '.join(p.name for p in spec.sample_inputs) or '-'}",
    ]
    if spec.deepimagej_tiling is not None:
        t = spec.deepimagej_tiling
        lines.append(f"  tiling: minimum {t.minimum_size}, patch {t.patch_size}, padding {t.padding}")
    return "\n".join(lines)


def architecture(spec: Any) -> str:
    """Layers (Keras) or operations (SavedModel) of the first runnable weights, one per line."""
    return "\n".join(describe_architecture(spec))


def explore_command(ij: Any, options: str | None) -> None:
    from deepimagej.imagej.commands.run import run_bundle_on_imageplus
    from deepimagej.imagej.java_classes import jc
    from deepimagej.imagej.models import find_model, installed_models

    IJ = jc.IJ
    opts = parse_options(options)
    if not opts.get("model"):
        table = jc.ResultsTable()
        for m in installed_models():
            table.incrementCounter()
            table.addValue("Model", m.name)
            table.addValue("Folder", str(m.folder))
            table.addValue("Status", "ok" if m.spec is not None else f"broken: {m.error}")
            IJ.log(f"[DeepImageJ] {m.name}  ({m.folder})" + ("" if m.spec else f"  BROKEN: {m.error}"))
        table.show("DeepImageJ models")
        return
    spec = find_model(opts["model"])
    IJ.log(model_info(spec))
    if "architecture" in opts:
        IJ.log(architecture(spec))
    if "apply" in opts:
        if not spec.sample_inputs:
            raise BundleError(f"model '{spec.name}' has no example image")
        imp = ij.open(spec.sample_inputs[0])
        result = run_bundle_on_imageplus(ij, RunOptions(model=str(spec.root)), imp)
        ij.current = result
        if ij.runner.running:
            result.show()
