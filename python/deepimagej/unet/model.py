"""The U-Net of Falk et al. (Nature Methods 2019), 2D and 3D, in Keras 3.

Architecture (paper, Supplementary Note 1): at every resolution level two 3x3 (3x3x3)
convolutions with leaky ReLU (slope 0.1); 2x max-pooling between levels, the number of
features doubling at each level; on the way up a 2x up-convolution (transposed
convolution with stride 2) halving the features, concatenation with the encoder features
of the same level (centre-cropped when convolutions are *valid*), two convolutions; a
final 1x1 convolution to K classes and a soft-max over the channel axis.

``padding="valid"`` is the paper's network (the output is smaller than the input by twice
the receptive radius; training and prediction use the overlap-tile strategy).
``padding="same"`` keeps the output the size of the input; its weights are identical in
shape, so a valid-trained model is exported through its same-padding twin
(:func:`same_padding_twin`): run with a halo of at least :func:`receptive_halo` pixels
(cropped after stitching), the twin computes what the valid network computes on the
mirror-padded image, which is the paper's overlap-tile prediction.

3D data with anisotropic element size (``anisotropy=(dz, dy, dx)``): at the finest levels,
while ``dz / dy >= 1.5``, convolutions are 1x3x3 and pooling 1x2x2 (2D operations); each
such pooling doubles the in-plane element size, until voxels are roughly isotropic and
the network continues with 3x3x3 / 2x2x2.

A coarser element size (``downsample=f``, 2D): the U-Net plugin runs a model at its own
element size, rescaling images to it. Here the rescaling is part of the network: the image is
averaged over f x f pixels before the first level and the class scores are up-sampled back
(bilinear) before the soft-max, so the bundle still maps an image to probabilities of the same
size. The receptive field grows f times at 1/f^2 of the cost; it suits objects larger than the
receptive field of the full-resolution network (e.g. detecting the centres of large cells).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepimagej.bundle import load_bundle
from deepimagej.engines.keras import load_keras_model
from deepimagej.engines.tensorflow import quiet_tensorflow
from deepimagej.errors import TrainingError

#: Leaky ReLU slope of the paper.
LEAKY_SLOPE = 0.1
#: A level uses 2D operations while the z element size is at least this times the in-plane one.
ANISOTROPY_RATIO = 1.5


@dataclass(frozen=True)
class LevelOps:
    """Kernel and pooling sizes per spatial axis at one resolution level."""

    kernel: tuple[int, ...]
    pool: tuple[int, ...]


def level_ops(depth: int, ndim: int, anisotropy: Sequence[float] | None = None) -> list[LevelOps]:
    """Kernel/pooling per level (``depth`` poolings, so ``depth + 1`` levels; the last has no pool)."""
    if ndim not in (2, 3):
        raise TrainingError(f"ndim={ndim}: the U-Net is 2D or 3D")
    if depth < 1:
        raise TrainingError(f"depth={depth}: the U-Net needs at least one pooling level")
    ops: list[LevelOps] = []
    if ndim == 2 or anisotropy is None:
        for _ in range(depth + 1):
            ops.append(LevelOps((3,) * ndim, (2,) * ndim))
        return ops
    if len(anisotropy) != 3:
        raise TrainingError(f"anisotropy={tuple(anisotropy)}: give the element size as (z, y, x)")
    dz, dy, dx = (float(v) for v in anisotropy)
    if min(dz, dy, dx) <= 0:
        raise TrainingError(f"anisotropy={tuple(anisotropy)}: element sizes must be positive")
    for _ in range(depth + 1):
        if dz / min(dy, dx) >= ANISOTROPY_RATIO:
            ops.append(LevelOps((1, 3, 3), (1, 2, 2)))
            dy, dx = 2 * dy, 2 * dx
        else:
            ops.append(LevelOps((3, 3, 3), (2, 2, 2)))
            dz, dy, dx = 2 * dz, 2 * dy, 2 * dx
    return ops


def size_multiple(
    depth: int, ndim: int, anisotropy: Sequence[float] | None = None, downsample: int = 1
) -> tuple[int, ...]:
    """Per-axis factor a same-padding input size must be a multiple of (product of the poolings)."""
    ops = level_ops(depth, ndim, anisotropy)
    mult = [downsample] * ndim
    for lv in ops[:depth]:
        mult = [m * p for m, p in zip(mult, lv.pool)]
    return tuple(mult)


def valid_output_size(size: int, depth: int, kernels: Sequence[int], pools: Sequence[int]) -> int | None:
    """Output size of the valid-padding U-Net along one axis for input ``size`` (None if invalid)."""
    s = size
    for level in range(depth):
        s -= 2 * (kernels[level] - 1)
        if s <= 0 or s % pools[level]:
            return None
        s //= pools[level]
    s -= 2 * (kernels[depth] - 1)
    if s <= 0:
        return None
    for level in reversed(range(depth)):
        s = s * pools[level] - 2 * (kernels[level] - 1)
        if s <= 0:
            return None
    return s


def _axis_ops(depth: int, ndim: int, anisotropy) -> list[tuple[list[int], list[int]]]:
    ops = level_ops(depth, ndim, anisotropy)
    return [([lv.kernel[a] for lv in ops], [lv.pool[a] for lv in ops]) for a in range(ndim)]


def valid_shapes(
    out_shape: Sequence[int], depth: int, anisotropy: Sequence[float] | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Smallest valid-padding (input, output) tile shapes with output at least ``out_shape``."""
    ndim = len(out_shape)
    ins, outs = [], []
    for (kernels, pools), want in zip(_axis_ops(depth, ndim, anisotropy), out_shape):
        size = 1
        while True:
            out = valid_output_size(size, depth, kernels, pools)
            if out is not None and out >= want:
                break
            size += 1
            if size > 100000:
                raise TrainingError(f"no valid U-Net tile for output size {want}")
        ins.append(size)
        outs.append(out)
    return tuple(ins), tuple(outs)


def same_shape(
    shape: Sequence[int], depth: int, anisotropy: Sequence[float] | None = None, downsample: int = 1
) -> tuple[int, ...]:
    """``shape`` rounded up to the next size a same-padding U-Net accepts."""
    mult = size_multiple(depth, len(shape), anisotropy, downsample)
    return tuple(-(-int(s) // m) * m for s, m in zip(shape, mult))


def receptive_halo(
    depth: int, ndim: int = 2, anisotropy: Sequence[float] | None = None, downsample: int = 1
) -> tuple[int, ...]:
    """Per-axis halo (pixels per side) that covers the receptive field of the U-Net.

    The valid-padding network loses ``r = (input - output) / 2`` pixels per side
    (92 px for the paper's depth-4 2D net, ``6 * 2**depth - 4`` in general). A single output
    pixel of the same-padding network can see up to ``pooling factor - 1`` pixels further,
    depending on its position on the pooling grid, so the influence radius is
    ``r + 2**depth - 1`` (measured: 23, 51, 107 px for depth 2, 3, 4). The halo is that
    radius rounded up to a multiple of the pooling factor, so that tiles stay on the pooling
    grid: then tiled prediction with the same-padding network has no seams and equals the
    prediction on the whole (mirror-padded) image. With ``downsample=f`` the network works on
    f x f averages, so the radius (in image pixels) is f times larger, plus the bilinear
    up-sampling's reach of one coarse pixel.
    """
    halos = []
    net_mult = size_multiple(depth, ndim, anisotropy)
    for (kernels, pools), mult in zip(_axis_ops(depth, ndim, anisotropy), net_mult):
        size = 1
        while (out := valid_output_size(size, depth, kernels, pools)) is None:
            size += 1
        radius = (size - out) // 2 + mult - 1
        if downsample > 1:
            radius = downsample * (radius + 1) + downsample - 1
        step = mult * downsample
        halos.append(-(-radius // step) * step)
    return tuple(halos)


def build_unet(
    ndim: int = 2,
    n_classes: int = 2,
    depth: int = 4,
    base_features: int = 64,
    padding: str = "same",
    in_channels: int = 1,
    anisotropy: Sequence[float] | None = None,
    name: str = "unet",
    downsample: int = 1,
):
    """Build the U-Net (Falk et al. 2019) as a Keras model.

    Args:
        ndim: 2 (input ``b,y,x,c``) or 3 (input ``b,z,y,x,c``).
        n_classes: K output classes (soft-max over the last axis); 2 = background / foreground.
        depth: number of 2x poolings (the paper uses 4).
        base_features: features at the finest level (paper: 64); doubled at each level.
        padding: ``"same"`` (output size = input size; sizes must be multiples of
            :func:`size_multiple`) or ``"valid"`` (the paper; see :func:`valid_shapes`).
        in_channels: input channels.
        anisotropy: 3D element size ``(z, y, x)``; 2D operations at the finest levels while
            the voxels are anisotropic (z at least 1.5 times the in-plane size).
        downsample: 2D only, a power of 2: the network works at 1/``downsample`` of the image
            resolution (``downsample x downsample`` average before the first level, bilinear
            up-sampling of the class scores before the soft-max); 1 = full resolution (the paper).

    Returns:
        A ``keras.Model`` mapping ``(b, [z,] y, x, in_channels)`` to class probabilities
        ``(b, [z,] y, x, n_classes)``. Spatial input sizes are free (``None``).
    """
    quiet_tensorflow()
    import keras
    from keras import layers

    if padding not in ("same", "valid"):
        raise TrainingError(f"padding='{padding}': use 'same' or 'valid'")
    if n_classes < 2:
        raise TrainingError(f"n_classes={n_classes}: the soft-max U-Net needs at least 2 classes")
    if base_features < 1:
        raise TrainingError(f"base_features={base_features}: must be positive")
    if (
        downsample < 1
        or downsample & (downsample - 1)
        or (downsample > 1 and (ndim != 2 or padding != "same"))
    ):
        raise TrainingError(
            f"downsample={downsample}: use 1, or a power of 2 with a 2D U-Net and padding='same'"
        )
    ops = level_ops(depth, ndim, anisotropy)
    conv = layers.Conv2D if ndim == 2 else layers.Conv3D
    pool = layers.MaxPooling2D if ndim == 2 else layers.MaxPooling3D
    up = layers.Conv2DTranspose if ndim == 2 else layers.Conv3DTranspose
    crop = layers.Cropping2D if ndim == 2 else layers.Cropping3D

    def block(x, features: int, kernel: tuple[int, ...], tag: str):
        for i in (1, 2):
            x = conv(
                features, kernel, padding=padding, kernel_initializer="he_normal", name=f"{tag}_conv{i}"
            )(x)
            x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{tag}_lrelu{i}")(x)
        return x

    inputs = keras.Input(shape=(None,) * ndim + (in_channels,), name="input")
    x = inputs
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    skips = []
    for level in range(depth):
        x = block(x, base_features * 2**level, ops[level].kernel, f"down{level}")
        skips.append(x)
        x = pool(pool_size=ops[level].pool, name=f"pool{level}")(x)
    x = block(x, base_features * 2**depth, ops[depth].kernel, "bottom")
    for level in reversed(range(depth)):
        features = base_features * 2**level
        x = up(
            features,
            ops[level].pool,
            strides=ops[level].pool,
            padding="valid",
            kernel_initializer="he_normal",
            name=f"up{level}",
        )(x)
        x = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"up{level}_lrelu")(x)
        skip = skips[level]
        if padding == "valid":
            # encoder features are larger by the border the decoder lost; crop symmetrically
            margin = _crop_margins(depth, ndim, ops, level)
            if any(m for m in margin):
                skip = crop(tuple((m, m) for m in margin), name=f"crop{level}")(skip)
        x = layers.Concatenate(axis=-1, name=f"concat{level}")([skip, x])
        x = block(x, features, ops[level].kernel, f"up{level}")
    x = conv(n_classes, (1,) * ndim, padding="same", name="classes")(x)
    for i in range(downsample.bit_length() - 1):  # bilinear x2 per step (see _bilinear_upsampling)
        x = _bilinear_upsampling(x, f"upsample{i}")
    outputs = layers.Softmax(axis=-1, name="softmax")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.unet_config = {  # kept on the object for export; not serialised by Keras
        "ndim": ndim,
        "n_classes": n_classes,
        "depth": depth,
        "base_features": base_features,
        "padding": padding,
        "in_channels": in_channels,
        "anisotropy": tuple(anisotropy) if anisotropy is not None else None,
        "downsample": downsample,
    }
    return model


def _bilinear_upsampling(x, name: str):
    """2x bilinear up-sampling (half-pixel centres) as nearest-neighbour 2x + a fixed [1, 2, 1] / 4 filter.

    Output pixel ``2i`` is ``0.25 a[i-1] + 0.75 a[i]`` and ``2i + 1`` is ``0.75 a[i] + 0.25 a[i+1]``,
    which is bilinear interpolation; unlike Keras' bilinear ``UpSampling2D`` it can be traced
    with unknown spatial sizes (SavedModel export). The filter is frozen (not trained).
    """
    import numpy as np
    from keras import layers

    x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_nearest")(x)
    smooth = layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name=name)
    x = smooth(x)
    taps = np.array([0.25, 0.5, 0.25], np.float32)
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, int(x.shape[-1]), 1), np.float32)
    smooth.set_weights([kernel])
    return x


def _crop_margins(depth: int, ndim: int, ops: list[LevelOps], level: int) -> tuple[int, ...]:
    """Crop per side of the level-``level`` skip so it matches the up-sampled decoder features.

    With ``E_m`` the input of level ``m`` and ``D_m`` its decoder output, ``G_m = E_m - D_m``
    does not depend on the input size: ``G_depth = 2 (k - 1)``, ``G_m = 4 (k - 1) + p G_{m+1}``;
    the skip (``E_l - 2(k-1)``) exceeds the up-sampled tensor (``p D_{l+1}``) by ``p G_{l+1}``.
    """
    margins = []
    for a in range(ndim):
        g = 2 * (ops[depth].kernel[a] - 1)
        for m in range(depth - 1, level, -1):
            g = 4 * (ops[m].kernel[a] - 1) + ops[m].pool[a] * g
        diff = ops[level].pool[a] * g
        margins.append(diff // 2)
    return tuple(margins)


#: Layer names of the two U-Nets inside a two-head detection model (:func:`with_cell_head`).
CENTRE_HEAD, CELL_HEAD = "centres", "cells"


def with_cell_head(centres, cells, name: str = "unet_centres_cells"):
    """One detection model from two 2D U-Nets: an object-centre U-Net and a cell-segmentation U-Net.

    Both see the same image; the output concatenates their soft-max outputs: channels 0-1 are
    the centre classes (background, centre) and channels 2-3 the cell classes (membrane, cell
    interior). :func:`deepimagej.unet.postprocess.to_detections` with ``cell_threshold`` uses
    the second pair to replace the peaks inside confidently segmented cells by the cells'
    centroids. The U-Nets may differ in depth and resolution (``downsample``); they are copied
    (same weights, same padding) under the layer names :data:`CENTRE_HEAD` and :data:`CELL_HEAD`.

    Args:
        centres: a 2-class 2D U-Net of :func:`build_unet` trained on object centres.
        cells: a 2-class 2D U-Net of :func:`build_unet` trained on cell interiors (same input channels).

    Returns:
        A ``keras.Model`` mapping ``(b, y, x, c)`` to ``(b, y, x, 4)``.
    """
    import keras
    from keras import layers

    copies = []
    for model, role in ((centres, CENTRE_HEAD), (cells, CELL_HEAD)):
        config = dict(getattr(model, "unet_config", None) or infer_config(model))
        if config["ndim"] != 2 or config["n_classes"] != 2:
            raise TrainingError(
                f"the {role} U-Net must be 2D with 2 classes (it is {config['ndim']}D, "
                f"{config['n_classes']} classes)"
            )
        copies.append(_rebuilt(model, config, padding="same", name=role))
    if copies[0].unet_config["in_channels"] != copies[1].unet_config["in_channels"]:
        raise TrainingError("the centre and cell U-Nets must take the same number of input channels")
    inputs = keras.Input(shape=(None, None, copies[0].unet_config["in_channels"]), name="input")
    outputs = layers.Concatenate(axis=-1, name="centre_and_cell_classes")([head(inputs) for head in copies])
    return keras.Model(inputs, outputs, name=name)


def heads(model):
    """``(centres, cells)`` of a two-head model (:func:`with_cell_head`); ``(model, None)`` for a plain U-Net."""
    names = {layer.name for layer in model.layers}
    if {CENTRE_HEAD, CELL_HEAD} <= names:
        return model.get_layer(CENTRE_HEAD), model.get_layer(CELL_HEAD)
    return model, None


def same_padding_twin(model):
    """A same-padding copy of a U-Net built by :func:`build_unet`, with the same weights.

    Valid and same U-Nets have identical layer weights; the twin keeps output size = input
    size, which is what a bundle needs. Export it with a halo of :func:`receptive_halo`.
    """
    config = dict(getattr(model, "unet_config", None) or infer_config(model))
    if config["padding"] == "same":
        return model
    return _rebuilt(model, config, padding="same", name=model.name)


def _rebuilt(model, config: dict, *, padding: str, name: str):
    """A new :func:`build_unet` U-Net of ``config`` (with ``padding``, ``name``) holding ``model``'s weights."""
    copy = build_unet(**{**config, "padding": padding}, name=name)
    for layer in copy.layers:
        weights = model.get_layer(layer.name).get_weights()
        if weights:
            layer.set_weights(weights)
    return copy


def infer_config(model) -> dict:
    """Recover :func:`build_unet`'s arguments from a loaded model (layer names and shapes)."""
    names = [layer.name for layer in model.layers]
    depth = sum(1 for n in names if n.startswith("pool"))
    if depth == 0 or "classes" not in names:
        raise TrainingError(f"model '{model.name}' is not a deepimagej U-Net (no pool/classes layers)")
    first = model.get_layer("down0_conv1")
    ndim = len(first.kernel_size)
    kernels = [tuple(model.get_layer(f"down{i}_conv1").kernel_size) for i in range(depth)]
    kernels.append(tuple(model.get_layer("bottom_conv1").kernel_size))
    anisotropy = None
    if ndim == 3 and any(k[0] == 1 for k in kernels):
        n2d = sum(1 for k in kernels if k[0] == 1)
        anisotropy = (float(2**n2d), 1.0, 1.0)
    downsample = int(model.get_layer("downsample").pool_size[0]) if "downsample" in names else 1
    return {
        "ndim": ndim,
        "n_classes": int(model.get_layer("classes").filters),
        "depth": depth,
        "base_features": int(first.filters),
        "padding": first.padding,
        "in_channels": int(model.input_shape[-1]),
        "anisotropy": anisotropy,
        "downsample": downsample,
    }


def load_bundle_model(bundle: str | Path):
    """The Keras U-Net of a bundle (its ``model.h5`` / ``keras_hdf5`` weights) or of a ``.h5`` file, for fine-tuning.

    Of a two-head detection bundle (centres + cells, :func:`with_cell_head`) this is the centre
    U-Net: points train centres; the cell U-Net is trained from masks.

    Raises:
        TrainingError: the bundle has no Keras weights.
        EngineError: the file cannot be loaded.
    """
    return heads(load_keras_model(keras_file(Path(bundle))))[0]


def keras_file(path: Path) -> Path:
    """The Keras weights file of a bundle (or ``path`` itself when it is one)."""
    if path.is_file() and path.suffix.lower() in {".h5", ".hdf5", ".keras"}:
        return path
    folder = path if path.is_dir() else path.parent
    for name in ("model.h5", "model.keras"):
        if (folder / name).is_file():
            return folder / name
    weights = load_bundle(path).weights.get("keras_hdf5")
    if weights is not None and weights.path is not None and weights.path.is_file():
        return weights.path
    raise TrainingError(
        f"{path}: no Keras weights (model.h5) in this bundle; fine-tuning needs a bundle exported by deepimagej train"
    )


def deepened(model, depth: int, *, downsample: int | None = None, seed: int = 0):
    """A deeper U-Net (or one at another resolution) initialised from ``model``'s weights.

    A depth-``d`` U-Net is the top of a depth-``D`` U-Net (``D >= d``) whose level ``d`` is the old
    bottleneck: the encoder blocks ``down0..`` and the old ``bottom`` block (-> ``down{d}``), the
    decoder blocks ``up0..up{d-1}`` and the ``classes`` layer have the same shapes in the deeper
    net and are copied; only the new lower levels (``down{d+1}..``, ``bottom``, ``up{d}..``) start
    from random weights (seeded). Each level doubles the receptive field, which e.g. the detection
    of large cells needs, while the knowledge of the transfer-learning source is kept. With
    ``downsample`` the copy runs at another resolution (:func:`build_unet`); the weights are the same.

    Args:
        model: a U-Net of :func:`build_unet` (e.g. :func:`load_bundle_model` of a bundle).
        depth: the new depth (at least the old one).
        downsample: the new resolution factor; ``None`` keeps the model's.
        seed: seed of the new levels' initial weights.

    Returns:
        ``model`` itself when nothing changes, else the new model (with ``unet_config``).

    Raises:
        TrainingError: a shallower depth was asked for.
    """
    import keras

    cfg = dict(getattr(model, "unet_config", None) or infer_config(model))
    downsample = cfg["downsample"] if downsample is None else downsample
    if cfg["depth"] == depth and cfg["downsample"] == downsample:
        return model
    if depth < cfg["depth"]:
        raise TrainingError(f"cannot make a U-Net shallower (depth {cfg['depth']} -> {depth})")
    keras.utils.set_random_seed(seed)
    dst = build_unet(
        cfg["ndim"],
        cfg["n_classes"],
        depth,
        cfg["base_features"],
        cfg["padding"],
        cfg["in_channels"],
        cfg["anisotropy"],
        downsample=downsample,
    )
    old = cfg["depth"]
    rename = {f"bottom_conv{i}": f"down{old}_conv{i}" for i in (1, 2)} if depth > old else {}
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        target = dst.get_layer(rename.get(layer.name, layer.name))
        if [a.shape for a in target.get_weights()] != [a.shape for a in weights]:
            raise TrainingError(f"cannot copy layer {layer.name} into {target.name}: the shapes differ")
        target.set_weights(weights)
    return dst
