"""Build a bundle from weights: the developer module of DeepImageJ ("Build Bundled Model").

:func:`build_bundle` takes a Keras model (object, ``.h5``/``.keras`` file) or a TensorFlow
SavedModel folder and writes a folder that every front door can run:

- ``tensorflow_saved_model_bundle.zip``: the TF SavedModel (signature ``serving_default``);
- ``model.h5``: the Keras model, kept for fine-tuning (when the source is Keras);
- ``config.xml`` (DeepImageJ 1.x) and ``rdf.yaml`` (bioimage.io 0.4);
- ImageJ pre/post-processing macros, copied;
- ``exampleImage.tif`` and the ``resultImage.tif`` it computes, plus ``exampleImage.npy`` /
  ``resultImage.npy`` test tensors in the model's axes.

The folder is assembled in a temporary sibling and moved into place at the end, so a
failed build never leaves a half-written bundle.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepimagej.bundle import CONFIG_NAME, RDF_NAME, load_bundle
from deepimagej.bundle.formats import SAVED_MODEL_PB, SAVED_MODEL_ZIP
from deepimagej.bundle.spec import (
    BORDER_MODES,
    AxisSpec,
    DeepImageJTiling,
    ModelSpec,
    ProcessingStep,
    TensorSpec,
    WeightsSpec,
)
from deepimagej.bundle.writer import write_config_xml, write_rdf_yaml
from deepimagej.checksums import sha256_of
from deepimagej.errors import BundleError
from deepimagej.io import ImageData, read_image, write_image
from deepimagej.outputs import check_replaceable_folder, replace_path

KERAS_FILE = "model.h5"


def _per_axis(value: int | dict[str, int], axis: str, default: int) -> int:
    if isinstance(value, dict):
        return int(value.get(axis, default))
    return int(value)


def _load_model(model: Any):  # noqa: ANN401, ANN202 - keras.Model or SavedModel folder
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise BundleError(f"{path}: weights file not found")
        if path.is_dir() or path.name == SAVED_MODEL_PB:
            return path if path.is_dir() else path.parent
        if path.suffix.lower() in {".h5", ".hdf5", ".keras"}:
            from deepimagej.engines.keras import load_keras_model

            return load_keras_model(path)
        raise BundleError(f"{path}: expected a Keras .h5/.keras file or a TensorFlow SavedModel folder")
    return model


def _export_saved_model(model: Any, folder: Path, n_channels: int, ndim: int) -> None:  # noqa: ANN401
    """Write a SavedModel with a ``serving_default`` signature taking a float32 batch."""
    from deepimagej.engines.tensorflow import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    spatial = [None] * ndim
    signature = tf.TensorSpec([None, *spatial, n_channels], tf.float32, name="input")

    @tf.function(input_signature=[signature])
    def serve(x):  # noqa: ANN001, ANN202
        return {"output": model(x, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())


def _tensors(
    name: str,
    input_axes: str,
    output_axes: str,
    n_in: int,
    n_out: int,
    min_size: int | dict[str, int],
    step: int | dict[str, int],
    halo: int | dict[str, int],
    preprocessing: Sequence[ProcessingStep],
    postprocessing: Sequence[ProcessingStep],
) -> tuple[TensorSpec, TensorSpec]:
    in_axes: list[AxisSpec] = []
    for a in input_axes:
        if a == "b":
            in_axes.append(AxisSpec("b", min=1, step=1))
        elif a == "c":
            in_axes.append(AxisSpec("c", size=n_in))
        else:
            m, s = _per_axis(min_size, a, 8), _per_axis(step, a, 8)
            in_axes.append(AxisSpec(a, min=m, step=s, halo=_per_axis(halo, a, 0)))
    out_axes: list[AxisSpec] = []
    for a in output_axes:
        if a == "b":
            out_axes.append(AxisSpec("b", min=1, step=1))
        elif a == "c":
            out_axes.append(AxisSpec("c", size=n_out))
        else:
            out_axes.append(AxisSpec(a, reference=("input", a), halo=_per_axis(halo, a, 0)))
    inputs = TensorSpec("input", tuple(in_axes), processing=tuple(preprocessing))
    outputs = TensorSpec("output", tuple(out_axes), processing=tuple(postprocessing))
    return inputs, outputs


def _channel_count(tensor: TensorSpec | None) -> int:
    """The fixed channel count of a template's tensor; 1 without a tensor, a ``c`` axis or a fixed size."""
    size = tensor.axis("c").size if tensor is not None and tensor.has_axis("c") else None
    return size or 1


def _template(config_template: Path | None, rdf_template: Path | None) -> ModelSpec | None:
    if rdf_template is not None:
        return load_bundle(rdf_template)
    if config_template is not None:
        return load_bundle(config_template)
    return None


def build_bundle(
    model: Any,  # noqa: ANN401 - keras.Model, path to .h5/.keras, or SavedModel folder
    out_dir: str | Path,
    *,
    name: str | None = None,
    description: str = "",
    input_axes: str | None = None,
    output_axes: str | None = None,
    min_size: int | dict[str, int] | None = None,
    step: int | dict[str, int] | None = None,
    halo: int | dict[str, int] | None = None,
    preprocessing: Sequence[ProcessingStep] | None = None,
    postprocessing: Sequence[ProcessingStep] | None = None,
    preprocessing_macros: Sequence[str | Path] | None = None,
    postprocessing_macros: Sequence[str | Path] | None = None,
    example_image: np.ndarray | str | Path | None = None,
    example_axes: str | None = None,
    config_template: str | Path | None = None,
    rdf_template: str | Path | None = None,
    authors: Sequence[str] = (),
    tags: Sequence[str] = (),
    license: str = "BSD-2-Clause",  # noqa: A002 - the rdf field's name
    documentation: str | None = None,
    pixel_size: str | None = None,
    border: str = "mirror",
    test_time_augmentation: bool = False,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ModelSpec:
    """Export a TensorFlow/Keras model as a runnable DeepImageJ + bioimage.io bundle.

    Settings come from the arguments, else from ``rdf_template``/``config_template`` (a
    bioimage.io ``rdf.yaml`` or DeepImageJ ``config.xml`` describing the model: axes,
    minimum size, halo, pre/post steps, macros, authors), else from defaults
    (``byxc``, min 8, step 8, no halo).

    Args:
        model: the model: a ``keras.Model``, a ``.h5``/``.keras`` file or a SavedModel folder.
        out_dir: the bundle folder to create (must not exist unless ``overwrite``).
        example_image: image (array or TIFF/NPY path) saved as ``exampleImage.tif``; the
            bundle computes ``resultImage.tif`` from it with its own pipeline.
        example_axes: axes of ``example_image`` (guessed when omitted).
        border: what the model sees beyond the image border, ``"mirror"`` or ``"zeros"``
            (:attr:`ModelSpec.border`); written to ``config.deepimagej_py.border`` of the rdf.
        test_time_augmentation: average the model over the 8 rotations/reflections of the image
            (:attr:`ModelSpec.test_time_augmentation`); the example result is computed that way.
        extra: more :attr:`ModelSpec.extra` entries; ``{"detection": {...}}`` (peak-finding
            settings of a detection model) is written to ``config.deepimagej_py.detection``.

    Returns:
        The spec of the written bundle, read back from its ``rdf.yaml``.
    """

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; choose another --out or pass overwrite=True")
    sources = [
        p
        for p in (
            model,
            config_template,
            rdf_template,
            example_image,
            *(preprocessing_macros or ()),
            *(postprocessing_macros or ()),
        )
        if isinstance(p, (str, Path))
    ]
    check_replaceable_folder(out, inputs=sources, markers=(RDF_NAME, CONFIG_NAME))
    if border not in BORDER_MODES:
        raise BundleError(f"border={border!r}: use one of {', '.join(BORDER_MODES)}")
    template = _template(
        Path(config_template) if config_template else None, Path(rdf_template) if rdf_template else None
    )
    macros_pre = [Path(p) for p in (preprocessing_macros or [])]
    macros_post = [Path(p) for p in (postprocessing_macros or [])]
    if config_template:  # DeepImageJ config: its macros live next to it
        cfg = load_bundle(Path(config_template), prefer="deepimagej")
        macros_pre = macros_pre or list(cfg.preprocessing_macros)
        macros_post = macros_post or list(cfg.postprocessing_macros)
        template = template or cfg
    for path in [*macros_pre, *macros_post]:
        if not path.is_file():
            raise BundleError(f"{path}: macro file not found")

    loaded = _load_model(model)
    keras_model = None if isinstance(loaded, Path) else loaded
    in_t = template.inputs[0] if template else None
    out_t = template.outputs[0] if template else None
    input_axes = input_axes or (in_t.axis_names if in_t else "byxc")
    output_axes = output_axes or (out_t.axis_names if out_t else input_axes)
    if "b" not in input_axes or not input_axes.endswith("c"):
        raise BundleError(
            f"input_axes '{input_axes}': exported models take channels-last batches, e.g. byxc or bzyxc"
        )
    spatial = [a for a in input_axes if a in "zyx"]
    if min_size is None:
        min_size = {a: in_t.axis(a).min for a in spatial} if in_t else 8
    if step is None:
        step = {a: in_t.axis(a).step for a in spatial} if in_t else 8
    if halo is None:
        halo = (
            {
                a: max(out_t.axis(a).halo if out_t and out_t.has_axis(a) else 0, in_t.axis(a).halo)
                for a in spatial
            }
            if in_t
            else 0
        )
    if preprocessing is None:
        preprocessing = in_t.processing if in_t else ()
    if postprocessing is None:
        postprocessing = out_t.processing if out_t else ()

    if keras_model is not None:
        n_in = int(keras_model.input_shape[-1])
        n_out = int(keras_model.output_shape[-1])
    else:
        n_in, n_out = _channel_count(in_t), _channel_count(out_t)
    inputs, outputs = _tensors(
        "input", input_axes, output_axes, n_in, n_out, min_size, step, halo, preprocessing, postprocessing
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        saved = work / "_saved_model"
        if keras_model is not None:
            _export_saved_model(keras_model, saved, n_in, len(spatial))
            keras_model.save(str(work / KERAS_FILE))
        else:
            shutil.copytree(loaded, saved)
        _zip_folder(saved, work / SAVED_MODEL_ZIP)
        shutil.rmtree(saved)
        weights = {
            "tensorflow_saved_model_bundle": WeightsSpec(
                "tensorflow_saved_model_bundle",
                f"./{SAVED_MODEL_ZIP}",
                work / SAVED_MODEL_ZIP,
                sha256=sha256_of(work / SAVED_MODEL_ZIP),
                tag="serve",
                signature="serving_default",
                input_names=("input",),
                output_names=("output",),
                version=_tf_version(),
            )
        }
        if keras_model is not None:
            weights["keras_hdf5"] = WeightsSpec(
                "keras_hdf5",
                f"./{KERAS_FILE}",
                work / KERAS_FILE,
                sha256=sha256_of(work / KERAS_FILE),
                version=_tf_version(),
            )
        copied_pre = tuple(_copy_into(p, work) for p in macros_pre)
        copied_post = tuple(_copy_into(p, work) for p in macros_post)
        tiling = DeepImageJTiling(
            fixed_patch=False,
            minimum_size=max(_per_axis(min_size, a, 8) for a in spatial),
            patch_size=_default_patch(min_size, step, halo, spatial),
            padding=max(_per_axis(halo, a, 0) for a in spatial),
        )
        spec = ModelSpec(
            name=name or (template.name if template else out.name),
            source=work / RDF_NAME,
            kind="bioimageio",
            format_version="0.4.10",
            inputs=(inputs,),
            outputs=(outputs,),
            weights=weights,
            description=description or (template.description if template else ""),
            authors=tuple(authors) or (template.authors if template else ()),
            cite=template.cite if template else (),
            tags=tuple(tags) or (template.tags if template else ()),
            license=license,
            documentation=None,
            preprocessing_macros=copied_pre,
            postprocessing_macros=copied_post,
            deepimagej_tiling=tiling,
            pixel_size=pixel_size or (template.pixel_size if template else None),
            border=border,
            test_time_augmentation=test_time_augmentation,
            extra={**(extra or {}), **({"documentation_text": documentation} if documentation else {})},
        )
        if documentation:
            (work / "README.md").write_text(documentation, encoding="utf-8")
            spec = dataclasses.replace(spec, documentation=work / "README.md")
        if example_image is not None:
            spec = _add_example(spec, work, example_image, example_axes)
        write_rdf_yaml(spec, work / RDF_NAME)
        write_config_xml(
            dataclasses.replace(spec, source=work / CONFIG_NAME, kind="deepimagej"), work / CONFIG_NAME
        )
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(work, 0o777 & ~mask)  # mkdtemp creates 0700
        replace_path(work, out)  # a previous bundle there stays whole until the new one is in place
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    from deepimagej.engines import clear_cache

    clear_cache()  # the engine cached during the example run pointed into the temporary folder
    return load_bundle(out)


def _tf_version() -> str | None:
    try:
        import tensorflow as tf

        return tf.__version__
    except ImportError:
        return None


def _default_patch(min_size, step, halo, spatial) -> int:  # noqa: ANN001
    """DeepImageJ's PatchSize: a valid size of about 512 (tiles of that size run fast on a CPU)."""
    m = max(_per_axis(min_size, a, 8) for a in spatial)
    s = max(_per_axis(step, a, 8) for a in spatial) or 1
    target = 512 + 2 * max(_per_axis(halo, a, 0) for a in spatial)
    return m + s * max(0, -(-(target - m) // s))


def _copy_into(path: Path, folder: Path) -> Path:
    target = folder / path.name
    shutil.copyfile(path, target)
    return target


def _add_example(
    spec: ModelSpec, work: Path, example: np.ndarray | str | Path, axes: str | None
) -> ModelSpec:
    """Save the example image, run the new bundle on it, save the result (+ runtime, memory)."""
    from deepimagej import layout, predict

    image = example if isinstance(example, np.ndarray) else np.asarray(read_image(example).array)
    user_axes = axes or layout.guess_axes(image.shape, spec)
    write_image(work / "exampleImage.tif", ImageData(image, user_axes))
    np.save(work / "exampleImage.npy", layout.Layout.of(user_axes, spec.inputs[0]).to_model(image))
    runnable = dataclasses.replace(spec, preprocessing_macros=(), postprocessing_macros=())
    # the memory probe (its own process) reads the bundle from disk
    write_rdf_yaml(runnable, work / RDF_NAME)
    start = time.perf_counter()
    prediction = predict.predict(runnable, predict.bind_inputs(runnable, image, user_axes))
    runtime = time.perf_counter() - start
    output = next(iter(prediction.outputs.values()))
    result, out_axes = output.array, output.axes
    if result.size and np.all(result == np.round(result)) and result.min() >= 0 and result.max() <= 255:
        result = result.astype(np.uint8)  # binary/label results: store compactly, exactly
    write_image(work / "resultImage.tif", ImageData(result, out_axes))
    np.save(work / "resultImage.npy", layout.Layout.of(out_axes, spec.outputs[0]).to_model(result))
    inputs = (
        dataclasses.replace(
            spec.inputs[0], test_tensor=work / "exampleImage.npy", sample_tensor=work / "exampleImage.tif"
        ),
    )
    outputs = (
        dataclasses.replace(
            spec.outputs[0], test_tensor=work / "resultImage.npy", sample_tensor=work / "resultImage.tif"
        ),
    )
    return dataclasses.replace(
        spec,
        inputs=inputs,
        outputs=outputs,
        sample_inputs=(work / "exampleImage.tif",),
        sample_outputs=(work / "resultImage.tif",),
        runtime=f"{runtime:.1f} s",
        memory_peak=f"{prediction.peak_rss / 2**20:.1f} Mb",
        extra={**spec.extra, "test_input_size": "x".join(str(s) for s in image.shape)},
    )
