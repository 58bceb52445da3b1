"""The model as data: one typed description for DeepImageJ 1.x and bioimage.io bundles.

Both descriptor dialects (DeepImageJ ``config.xml`` and bioimage.io ``rdf.yaml`` /
``bioimageio.yaml``, format 0.4 and 0.5) are read into a :class:`ModelSpec`. Axes are
always named with bioimage.io letters: ``b`` (batch), ``c`` (channel), ``z``, ``y``,
``x``, ``t`` (time), ``i`` (index). DeepImageJ strings such as ``NHWC`` are converted
when the descriptor is read (see :func:`deepimagej.bundle.axes.deepimagej_axes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepimagej.bundle.formats import RUNNABLE_WEIGHT_FORMATS

AxisName = Literal["b", "c", "z", "y", "x", "t", "i"]
SPATIAL_AXES = ("z", "y", "x")

#: Tensor data types of bioimage.io descriptors (``data_type`` in 0.4, ``data.type`` in 0.5).
DATA_TYPES = (
    "float32",
    "float64",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "bool",
)
#: What a model may see beyond the image border (:attr:`ModelSpec.border`).
BORDER_MODES = ("mirror", "zeros")
#: This package's own block in an rdf's free-form ``config`` (settings DeepImageJ has no field for).
OWN_CONFIG_KEY = "deepimagej_py"
#: Keys of ``config.deepimagej_py.detection``: the peak settings of a detection model and the
#: cell-head settings of a two-head one (:func:`deepimagej.unet.postprocess.to_detections`).
DETECTION_KEYS = (
    "threshold",
    "smooth_sigma",
    "min_distance",
    "cell_threshold",
    "min_cell_area",
    "min_solidity",
)


@dataclass(frozen=True)
class AxisSpec:
    """One axis of a model tensor.

    Attributes:
        name: bioimage.io axis letter (b, c, z, y, x, t, i).
        size: fixed size, or ``None`` when the size is parametrised (``min`` + n * ``step``)
            or given by a reference to another tensor's axis.
        min: smallest valid size (parametrised axes).
        step: size increment (parametrised axes); 0 means the size is fixed at ``min``.
        halo: pixels on each side of an *output* axis that are unreliable (receptive-field
            border) and are cropped when tiles are stitched. For DeepImageJ configs this is
            the ``Padding`` field, stored on both input and output spatial axes.
        reference: ``(tensor_name, axis_name)`` the size of this axis follows, if any.
        scale: output size = reference size * scale + 2 * offset.
        offset: see ``scale``.
        channel_names: names of the channels (channel axes only).
    """

    name: str
    size: int | None = None
    min: int = 1
    step: int = 0
    halo: int = 0
    reference: tuple[str, str] | None = None
    scale: float = 1.0
    offset: float = 0.0
    channel_names: tuple[str, ...] = ()

    @property
    def is_spatial(self) -> bool:
        return self.name in SPATIAL_AXES

    def valid_size(self, n: int) -> bool:
        """Whether ``n`` is an allowed size for this (input) axis."""
        if self.size is not None:
            return n == self.size
        if self.reference is not None:
            return True
        if self.step == 0:
            return n == self.min
        return n >= self.min and (n - self.min) % self.step == 0


@dataclass(frozen=True)
class ProcessingStep:
    """A bioimage.io pre- or post-processing operation, e.g. ``scale_range``.

    ``name`` is the 0.4 ``name`` / 0.5 ``id``; ``kwargs`` are kept as written except that
    ``axes`` is normalised to a string of axis letters (0.5 lists such as ``[x, y]`` become
    ``"xy"``).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor of the model."""

    name: str
    axes: tuple[AxisSpec, ...]
    data_type: str = "float32"
    data_range: tuple[float, float] | None = None
    description: str = ""
    #: preprocessing (inputs) or postprocessing (outputs) operations, in order.
    processing: tuple[ProcessingStep, ...] = ()
    test_tensor: Path | None = None
    test_tensor_sha256: str | None = None
    sample_tensor: Path | None = None

    @property
    def axis_names(self) -> str:
        """Axis letters in order, e.g. ``"byxc"``."""
        return "".join(a.name for a in self.axes)

    def axis(self, name: str) -> AxisSpec:
        for a in self.axes:
            if a.name == name:
                return a
        raise KeyError(f"tensor {self.name!r} has no axis {name!r} (axes: {self.axis_names})")

    def has_axis(self, name: str) -> bool:
        return any(a.name == name for a in self.axes)


@dataclass(frozen=True)
class ArchitectureSpec:
    """The network of ``pytorch_state_dict`` weights: Python code that builds the model.

    Attributes:
        callable: name of the class or function in the source that returns the ``torch.nn.Module``.
        source: the source file as written (relative path or URL), or ``None`` for ``import_from``.
        path: the resolved local file, or ``None`` (URL, or an importable module).
        sha256: expected checksum of the source file.
        import_from: an importable module that holds ``callable`` (0.5 ``import_from``).
        kwargs: keyword arguments of ``callable``.
    """

    callable: str
    source: str | None = None
    path: Path | None = None
    sha256: str | None = None
    import_from: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsSpec:
    """One weights entry of the bundle.

    Attributes:
        format: one of :data:`~deepimagej.bundle.formats.WEIGHT_FORMATS`.
        source: the source as written in the descriptor (relative path or URL).
        path: the resolved local path, or ``None`` for a remote source (not fetched).
        sha256: expected checksum, if the descriptor gives one.
        tag: TensorFlow SavedModel tag (e.g. ``serve``).
        signature: TensorFlow signature key (e.g. ``serving_default``).
        input_names / output_names: tensor names inside the graph, when the bundle gives them.
        architecture: the network's code (``pytorch_state_dict`` weights only).
    """

    format: str
    source: str
    path: Path | None
    sha256: str | None = None
    tag: str | None = None
    signature: str | None = None
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    version: str | None = None
    architecture: ArchitectureSpec | None = None


@dataclass(frozen=True)
class DeepImageJTiling:
    """DeepImageJ 1.x tiling fields (config.xml ``ModelCharacteristics``).

    ``fixed_patch``: the model only accepts ``patch_size``; otherwise the patch is the
    smallest multiple of ``minimum_size`` that covers the image plus ``2 * padding``
    (paper Eq. 2), capped at ``patch_size``.
    """

    fixed_patch: bool
    minimum_size: int
    patch_size: int
    padding: int
    fixed_padding: bool = True
    allow_tiling: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """Everything deepimagej knows about a model bundle.

    Attributes:
        name: model name.
        source: the descriptor file that was read.
        kind: ``"deepimagej"`` for a ``config.xml``, ``"bioimageio"`` for ``rdf.yaml``.
        format_version: descriptor format version (``"deepimagej-1"`` for config.xml).
        inputs / outputs: tensors, with named axes.
        weights: weights entries keyed by format.
        preprocessing_macros / postprocessing_macros: ImageJ macro files to run, in order.
        sample_inputs / sample_outputs: example image and reference result (TIFF).
        deepimagej_tiling: DeepImageJ tiling rules, when the bundle is a DeepImageJ 1.x config.
        pixel_size: physical pixel size as written (e.g. ``"1.30µm x 1.30µm"``).
        memory_peak / runtime: as measured by the bundle author.
        border: what the model sees beyond the image border: ``"mirror"`` (DeepImageJ's mirror
            padding, the default) or ``"zeros"`` (the pre-processed image is padded with zeros by
            the halo; for models trained that way, e.g. detection of objects cut by the border,
            whose mirror image would look like a whole object). Read from
            ``config.deepimagej_py.border`` of an ``rdf.yaml``.
        test_time_augmentation: run the model on the 8 rotations/reflections of the image (in
            the y-x plane) and average the outputs (``config.deepimagej_py.test_time_augmentation``);
            8 times the computation for steadier results.
        extra: anything else worth showing (``info``), kept as read.
    """

    name: str
    source: Path
    kind: Literal["deepimagej", "bioimageio"]
    format_version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    weights: dict[str, WeightsSpec] = field(default_factory=dict)
    description: str = ""
    authors: tuple[str, ...] = ()
    cite: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    license: str | None = None
    documentation: Path | None = None
    preprocessing_macros: tuple[Path, ...] = ()
    postprocessing_macros: tuple[Path, ...] = ()
    sample_inputs: tuple[Path, ...] = ()
    sample_outputs: tuple[Path, ...] = ()
    deepimagej_tiling: DeepImageJTiling | None = None
    pixel_size: str | None = None
    memory_peak: str | None = None
    runtime: str | None = None
    border: str = "mirror"
    test_time_augmentation: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The bundle folder."""
        return self.source.parent

    @property
    def has_macros(self) -> bool:
        return bool(self.preprocessing_macros or self.postprocessing_macros)

    def runnable_weights(self) -> list[WeightsSpec]:
        """Weights entries deepimagej can execute, in preference order."""
        return [self.weights[f] for f in RUNNABLE_WEIGHT_FORMATS if f in self.weights]
