"""The model as data: read DeepImageJ and bioimage.io bundles into one :class:`ModelSpec`.

>>> from deepimagej.bundle import load_bundle
>>> spec = load_bundle("../shared/assets/unet_pancreatic")          # doctest: +SKIP
>>> spec.inputs[0].axis_names, spec.inputs[0].axis("y").min          # doctest: +SKIP
('byxc', 8)

Submodules: :mod:`~deepimagej.bundle.spec` (the data model), :mod:`~deepimagej.bundle.axes`
(axis letters), :mod:`~deepimagej.bundle.deepimagej_config` (``config.xml``),
:mod:`~deepimagej.bundle.bioimageio` (``rdf.yaml``), :mod:`~deepimagej.bundle.validate`
(weights / input checks) and :mod:`~deepimagej.bundle.writer` (writing both formats).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from deepimagej.bundle.axes import one_line
from deepimagej.bundle.bioimageio import read_rdf
from deepimagej.bundle.deepimagej_config import read_config_xml
from deepimagej.bundle.spec import (
    AxisSpec,
    DeepImageJTiling,
    ModelSpec,
    ProcessingStep,
    TensorSpec,
    WeightsSpec,
)
from deepimagej.errors import BundleError, DeepImageJError

__all__ = [
    "AxisSpec",
    "DeepImageJTiling",
    "ModelSpec",
    "ProcessingStep",
    "TensorSpec",
    "WeightsSpec",
    "find_descriptors",
    "is_bundle_folder",
    "is_descriptor_name",
    "load_bundle",
    "read_descriptor",
]

#: The bioimage.io descriptor deepimagej writes.
RDF_NAME = "rdf.yaml"
#: bioimage.io descriptor names looked for in a bundle folder, in order of preference
#: (``NAME.bioimageio.yaml``, :data:`RDF_SUFFIX`, comes after the first two).
RDF_NAMES = (RDF_NAME, "bioimageio.yaml", "model.yaml")
#: A bioimage.io descriptor may be called ``NAME.bioimageio.yaml`` (bioimage.io packages).
RDF_SUFFIX = ".bioimageio.yaml"
#: The DeepImageJ 1.x descriptor.
CONFIG_NAME = "config.xml"
#: Every fixed descriptor name (see also :data:`RDF_SUFFIX`).
DESCRIPTOR_NAMES = (*RDF_NAMES, CONFIG_NAME)

Prefer = Literal["bioimageio", "deepimagej"]


def load_bundle(path: str | Path, prefer: Prefer | None = None) -> ModelSpec:
    """Read a model bundle (folder or descriptor file) into a :class:`ModelSpec`.

    In a folder the descriptors looked for are ``rdf.yaml``, ``bioimageio.yaml``,
    ``*.bioimageio.yaml``, ``model.yaml`` (bioimage.io) and ``config.xml`` (DeepImageJ 1.x).
    bioimage.io descriptors win unless ``prefer="deepimagej"``. When the folder holds both
    kinds, the chosen one is the source of truth and the other only fills gaps: a bioimage.io
    spec borrows the config's macros, TensorFlow tag/signature, pixel size and measurements
    when it lacks them; a DeepImageJ spec borrows the rdf's description, tags, licence, test
    tensors (same tensor name and axes), sha256 of the same weights file and other weight
    formats (e.g. ``keras_hdf5``). A descriptor file given directly is the chosen one, with
    its folder's other descriptor merged the same way.

    Args:
        path: bundle folder, or a ``config.xml`` / ``*.yaml`` descriptor.
        prefer: ``"bioimageio"`` (default) or ``"deepimagej"``.

    Returns:
        The model description; ``spec.source`` is the chosen descriptor.

    Raises:
        BundleError: no descriptor found, or the chosen one is broken (one-line message naming
            the file and the field).
    """
    if prefer not in (None, "bioimageio", "deepimagej"):
        raise BundleError(f"prefer must be 'bioimageio' or 'deepimagej', got {prefer!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise BundleError(f"{path}: no such bundle folder or descriptor file")
    if path.is_dir():
        rdfs, config = find_descriptors(path)
        if not rdfs and config is None:
            raise BundleError(f"{path}: no model descriptor found (expected {_expected()})")
        if config is not None and (prefer == "deepimagej" or not rdfs):
            primary, secondary = config, (rdfs[0] if rdfs else None)
        else:
            primary, secondary = rdfs[0], config
    else:
        primary = path
        rdfs, config = find_descriptors(path.parent)
        if _is_config(path):
            secondary = rdfs[0] if rdfs else None
        else:
            secondary = config
    spec = read_descriptor(primary)
    if secondary is not None and secondary.resolve() != primary.resolve():
        spec = _merge_secondary(spec, secondary)
    return spec


def read_descriptor(path: Path) -> ModelSpec:
    """Read exactly one descriptor file (no merging), choosing the reader from its name."""
    path = Path(path)
    if _is_config(path):
        return read_config_xml(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_rdf(path)
    raise BundleError(f"{path}: not a model descriptor (expected config.xml or a .yaml bioimage.io file)")


def find_descriptors(folder: Path) -> tuple[list[Path], Path | None]:
    """The bioimage.io descriptors (preferred first) and the ``config.xml`` of ``folder``."""
    folder = Path(folder)
    rdfs = [folder / n for n in RDF_NAMES[:2] if (folder / n).is_file()]
    rdfs += sorted(p for p in folder.glob(f"*{RDF_SUFFIX}") if p.is_file() and p not in rdfs)
    if (folder / RDF_NAMES[2]).is_file():
        rdfs.append(folder / RDF_NAMES[2])
    config = folder / CONFIG_NAME
    return rdfs, (config if config.is_file() else None)


def is_descriptor_name(name: str) -> bool:
    """Whether a file called ``name`` is a model descriptor deepimagej looks for in a bundle folder."""
    return name in DESCRIPTOR_NAMES or name.endswith(RDF_SUFFIX)


def is_bundle_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a model descriptor (it may still be broken: :func:`load_bundle` tells)."""
    rdfs, config = find_descriptors(folder) if Path(folder).is_dir() else ([], None)
    return bool(rdfs) or config is not None


def _expected() -> str:
    return ", ".join(DESCRIPTOR_NAMES[:-1]) + f" or {DESCRIPTOR_NAMES[-1]}"


def _is_config(path: Path) -> bool:
    return path.suffix.lower() == ".xml"


# --------------------------------------------------------------------------- merging


def _merge_secondary(spec: ModelSpec, secondary: Path) -> ModelSpec:
    """Fill gaps of ``spec`` from the folder's other descriptor; a broken one is only noted."""
    try:
        other = read_descriptor(secondary)
    except DeepImageJError as exc:
        extra = {**spec.extra, "secondary_descriptor_error": one_line(str(exc))}
        return dataclasses.replace(spec, extra=extra)
    if spec.kind == "bioimageio":
        merged = _fill_from_config(spec, other)
    else:
        merged = _fill_from_rdf(spec, other)
    return dataclasses.replace(merged, extra={**other.extra, **merged.extra, "merged_from": str(secondary)})


def _fill_common(spec: ModelSpec, other: ModelSpec) -> ModelSpec:
    """Metadata fields that either descriptor may lack."""
    return dataclasses.replace(
        spec,
        description=spec.description or other.description,
        authors=spec.authors or other.authors,
        cite=spec.cite or other.cite,
        tags=spec.tags or other.tags,
        license=spec.license or other.license,
        documentation=spec.documentation or other.documentation,
        sample_inputs=spec.sample_inputs or other.sample_inputs,
        sample_outputs=spec.sample_outputs or other.sample_outputs,
        pixel_size=spec.pixel_size or other.pixel_size,
        memory_peak=spec.memory_peak or other.memory_peak,
        runtime=spec.runtime or other.runtime,
    )


def _fill_from_config(spec: ModelSpec, config: ModelSpec) -> ModelSpec:
    """A bioimage.io spec, completed from the config.xml beside it."""
    weights = dict(spec.weights)
    tf_cfg = config.weights.get("tensorflow_saved_model_bundle")
    tf = weights.get("tensorflow_saved_model_bundle")
    if tf is not None and tf_cfg is not None:
        weights[tf.format] = dataclasses.replace(
            tf,
            tag=tf.tag or tf_cfg.tag,
            signature=tf.signature or tf_cfg.signature,
            input_names=tf.input_names or tf_cfg.input_names,
            output_names=tf.output_names or tf_cfg.output_names,
        )
    for fmt, w in config.weights.items():
        if fmt not in weights and w.path is not None and w.path.exists():
            weights[fmt] = w
    merged = _fill_common(spec, config)
    if not (spec.preprocessing_macros or spec.postprocessing_macros):
        merged = dataclasses.replace(
            merged,
            preprocessing_macros=config.preprocessing_macros,
            postprocessing_macros=config.postprocessing_macros,
        )
    return dataclasses.replace(merged, weights=weights)


def _fill_from_rdf(spec: ModelSpec, rdf: ModelSpec) -> ModelSpec:
    """A DeepImageJ spec, completed from the rdf.yaml beside it (config.xml stays in charge)."""
    weights = dict(spec.weights)
    for fmt, w in rdf.weights.items():
        mine = weights.get(fmt)
        if mine is None:
            weights[fmt] = w
        elif mine.path == w.path:
            weights[fmt] = dataclasses.replace(
                mine, sha256=mine.sha256 or w.sha256, version=mine.version or w.version
            )
    merged = _fill_common(spec, rdf)
    merged = dataclasses.replace(
        merged,
        name=spec.name,
        inputs=_borrow_tests(spec.inputs, rdf.inputs),
        outputs=_borrow_tests(spec.outputs, rdf.outputs),
        weights=weights,
        border=rdf.border,  # config.xml has no field for these two
        test_time_augmentation=rdf.test_time_augmentation,
    )
    if not spec.has_macros:
        merged = dataclasses.replace(
            merged,
            preprocessing_macros=rdf.preprocessing_macros,
            postprocessing_macros=rdf.postprocessing_macros,
        )
    return merged


def _borrow_tests(mine: tuple[TensorSpec, ...], theirs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Copy test tensors of same-named tensors with the same axes (a test tensor is in its axes)."""
    by_name = {t.name: t for t in theirs}
    result = []
    for t in mine:
        other = by_name.get(t.name)
        if other is not None and other.axis_names == t.axis_names and t.test_tensor is None:
            t = dataclasses.replace(
                t, test_tensor=other.test_tensor, test_tensor_sha256=other.test_tensor_sha256
            )
        result.append(t)
    return tuple(result)
