"""On-the-fly data augmentation of the U-Net (Falk et al., Nature Methods 2019, Methods M3).

Each training tile is drawn as follows:

1. a tile centre is sampled from a pdf proportional to the balancing weight :math:`w'_{bal}`
   (zero on ignored pixels, so a tile is never centred on an ignored region),
2. one coordinate map is built from a random rotation (in-plane for 3D) and a smooth elastic
   deformation (random displacements on a coarse grid, cubic-spline interpolation to a dense
   field),
3. image, classes and weights are sampled through that *same* map (image: linear or cubic,
   classes: nearest neighbour, weights: linear); beyond the image border the tile shows the
   mirror image (DeepImageJ's padding) or zeros (``border="zeros"``, see :func:`augment_sample`),
4. the image tile's intensities go through a random smooth strictly increasing curve.

Arrays are channel-last: images are ``(Y, X[, C])`` or ``(Z, Y, X[, C])``; classes and weights
have the spatial shape only. Distances (``grid_spacing``, ``elastic_sigma``) are in pixels, or in
the unit of ``element_size`` when it is given (anisotropic 3D data).

Defaults: full random rotation in [0, 2 pi); elastic deformation with a 150 px control-point
grid and 10 px standard deviation of the displacements (the defaults of the U-Net Fiji/caffe
plugin of Falk et al. 2019; Ronneberger et al. 2015 also used 10 px); intensity curves with 5
knots (monotone cubic, PCHIP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import PchipInterpolator

from deepimagej.bundle.spec import BORDER_MODES
from deepimagej.errors import TrainingError
from deepimagej.unet.weights import element_spacing

__all__ = [
    "ELASTIC_SIGMA",
    "GRID_SPACING",
    "Augmenter",
    "augment_sample",
    "coordinate_map",
    "elastic_field",
    "intensity_curve",
    "random_rotation",
    "sample_tile_center",
]

#: Control-point spacing of the elastic deformation, pixels (U-Net plugin default).
GRID_SPACING = 150.0
#: Standard deviation of the control-point displacements, pixels (U-Net plugin default).
ELASTIC_SIGMA = 10.0


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def sample_tile_center(pdf: np.ndarray, rng=None) -> tuple[int, ...]:
    """Draw a tile centre with probability proportional to ``pdf``.

    Parameters
    ----------
    pdf : numpy.ndarray
        Non-negative map over the image (typically :math:`w'_{bal}`, which is 0 on ignored
        pixels); it need not be normalised. Pixels where it is 0 are never drawn.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.

    Returns
    -------
    tuple of int
        Index of the centre pixel, one entry per axis of ``pdf``.

    Raises
    ------
    TrainingError
        If the pdf has no positive value (everything ignored).
    """
    pdf = np.asarray(pdf, dtype=np.float64)
    cdf = np.cumsum(np.clip(pdf.ravel(), 0.0, None))
    total = cdf[-1] if cdf.size else 0.0
    if not total > 0 or not np.isfinite(total):
        raise TrainingError("cannot sample a training tile: every pixel of the image is ignored (weight 0)")
    u = _rng(rng).random() * total
    flat = int(np.searchsorted(cdf, u, side="right"))
    flat = min(flat, cdf.size - 1)
    return tuple(int(i) for i in np.unravel_index(flat, pdf.shape))


def random_rotation(rng=None, ndim: int = 2, max_angle: float = 2 * np.pi) -> np.ndarray:
    """Random rotation matrix; in 3D a rotation in the (Y, X) plane only.

    Parameters
    ----------
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    ndim : int
        2 or 3 spatial dimensions.
    max_angle : float
        The angle is uniform in ``[0, max_angle)`` radians (default a full turn, as in the paper).

    Returns
    -------
    numpy.ndarray
        ``(ndim, ndim)`` matrix acting on array-ordered coordinates ``(y, x)`` / ``(z, y, x)``.
    """
    angle = _rng(rng).random() * max_angle
    c, s = np.cos(angle), np.sin(angle)
    r = np.eye(ndim)
    r[-2:, -2:] = [[c, -s], [s, c]]
    return r


def elastic_field(
    shape: Sequence[int],
    grid_spacing: float = GRID_SPACING,
    sigma: float = ELASTIC_SIGMA,
    rng=None,
    element_size: Sequence[float] | float | None = None,
) -> np.ndarray:
    """Smooth random displacement field (Falk et al. 2019, M3).

    Displacements are drawn from a normal distribution with standard deviation ``sigma`` on a
    coarse grid of control points ``grid_spacing`` apart (covering the tile, at least 2 per
    axis) and interpolated to every pixel by cubic splines.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of the dense field.
    grid_spacing : float
        Distance between control points (default 150 px).
    sigma : float
        Standard deviation of the control-point displacements (default 10 px).
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    element_size : float or sequence of float, optional
        Pixel size per axis; then ``grid_spacing`` and ``sigma`` are in that unit.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(ndim, *shape)``: the displacement along each axis, in pixels.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    spacing = element_spacing(element_size, ndim)
    rng = _rng(rng)
    coarse_shape = tuple(max(2, int(np.ceil(n * s / grid_spacing)) + 1) for n, s in zip(shape, spacing))
    axes = [np.linspace(0, c - 1, n) for c, n in zip(coarse_shape, shape)]
    grid = np.meshgrid(*axes, indexing="ij")
    field = np.empty((ndim, *shape), dtype=np.float32)
    for a in range(ndim):
        coarse = rng.normal(0.0, sigma / spacing[a], size=coarse_shape)
        field[a] = ndi.map_coordinates(coarse, grid, order=3, mode="nearest")
    return field


def intensity_curve(
    image: np.ndarray,
    rng=None,
    n_knots: int = 5,
    strength: float = 0.5,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Map intensities through a random smooth strictly increasing curve (Falk et al. 2019, M3).

    The intensity range ``[min, max]`` of the image (per channel) is split into
    ``n_knots - 1`` intervals whose mapped lengths are ``1 + strength * u``, ``u`` uniform in
    ``[-1, 1)``, then normalised: the curve is monotone, keeps ``min`` and ``max`` and is
    interpolated by a monotone cubic (PCHIP).

    Parameters
    ----------
    image : numpy.ndarray
        Image or tile.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    n_knots : int
        Number of knots of the curve (>= 2).
    strength : float
        In ``[0, 1)``: 0 is the identity, larger is a stronger distortion.
    channel_axis : int or None
        Axis of channels to map independently (None: one curve for the whole image).

    Returns
    -------
    numpy.ndarray
        ``float32`` image of the same shape.
    """
    if not 0 <= strength < 1:
        raise ValueError(f"strength must be in [0, 1), got {strength}")
    rng = _rng(rng)
    image = np.asarray(image, dtype=np.float32)
    if channel_axis is not None:
        moved = np.moveaxis(image, channel_axis, 0)
        out = np.stack([intensity_curve(ch, rng, n_knots, strength) for ch in moved])
        return np.moveaxis(out, 0, channel_axis)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image.copy()
    steps = 1.0 + strength * rng.uniform(-1.0, 1.0, size=n_knots - 1)
    y = np.concatenate([[0.0], np.cumsum(steps)])
    y /= y[-1]
    x = np.linspace(0.0, 1.0, n_knots)
    curve = PchipInterpolator(x, y)
    return (lo + (hi - lo) * curve((image - lo) / (hi - lo))).astype(np.float32)


def coordinate_map(
    center: Sequence[float],
    shape: Sequence[int],
    rotation: np.ndarray | None = None,
    displacement: np.ndarray | None = None,
    element_size: Sequence[float] | float | None = None,
) -> np.ndarray:
    """Source coordinates of every pixel of a tile centred on ``center``.

    The tile pixel at offset ``q`` (pixels) from the tile centre is displaced by
    ``displacement`` (pixels), converted to physical units, rotated by ``rotation`` and
    converted back: ``center + R (q + u) s / s``.

    Parameters
    ----------
    center : sequence of float
        Tile centre in image (array) coordinates.
    shape : sequence of int
        Spatial shape of the tile.
    rotation : numpy.ndarray, optional
        ``(ndim, ndim)`` rotation in array-ordered physical coordinates.
    displacement : numpy.ndarray, optional
        ``(ndim, *shape)`` displacement in pixels (from :func:`elastic_field`).
    element_size : float or sequence of float, optional
        Pixel size per axis (rotations are done in physical space).

    Returns
    -------
    numpy.ndarray
        ``(ndim, *shape)`` float array for :func:`scipy.ndimage.map_coordinates`.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    spacing = element_spacing(element_size, ndim)
    offsets = np.meshgrid(*[np.arange(n, dtype=np.float64) - (n - 1) / 2.0 for n in shape], indexing="ij")
    q = np.stack(offsets)
    if displacement is not None:
        q = q + displacement
    if rotation is not None:
        phys = q * spacing.reshape((ndim,) + (1,) * ndim)
        phys = np.tensordot(np.asarray(rotation, dtype=np.float64), phys, axes=1)
        q = phys / spacing.reshape((ndim,) + (1,) * ndim)
    return q + np.asarray(center, dtype=np.float64).reshape((ndim,) + (1,) * ndim)


def _crop_center(coords: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    in_shape = coords.shape[1:]
    box = tuple(slice((i - o) // 2, (i - o) // 2 + o) for i, o in zip(in_shape, out_shape))
    return coords[(slice(None),) + box]


def augment_sample(
    image: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    rng=None,
    *,
    out_shape: Sequence[int],
    in_shape: Sequence[int] | None = None,
    pdf: np.ndarray | None = None,
    center: Sequence[int] | None = None,
    rotation: bool = True,
    elastic: bool = True,
    intensity: bool = True,
    element_size: Sequence[float] | float | None = None,
    grid_spacing: float = GRID_SPACING,
    elastic_sigma: float = ELASTIC_SIGMA,
    max_angle: float = 2 * np.pi,
    image_order: int = 1,
    n_knots: int = 5,
    intensity_strength: float = 0.5,
    border: str = "mirror",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one augmented training tile (Falk et al. 2019, M3).

    Parameters
    ----------
    image : numpy.ndarray
        ``(Y, X[, C])`` or ``(Z, Y, X[, C])``; the spatial shape is that of ``classes``.
    classes : numpy.ndarray
        Class image (integer), spatial shape.
    weights : numpy.ndarray
        Loss weights, spatial shape.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    out_shape : sequence of int
        Spatial shape of the class and weight tiles (the network's output).
    in_shape : sequence of int, optional
        Spatial shape of the image tile (the network's input); defaults to ``out_shape``. For a
        valid-padding U-Net it is larger; the class/weight tiles are exactly the central
        ``out_shape`` crop of the image tile's geometry (``in_shape - out_shape`` should be even).
    pdf : numpy.ndarray, optional
        Sampling pdf of the tile centre (typically :math:`w'_{bal}`, 0 on ignored pixels);
        defaults to ``weights``.
    center : sequence of int, optional
        Fixed tile centre (skips sampling).
    rotation, elastic, intensity : bool
        Which augmentations to apply.
    element_size : float or sequence of float, optional
        Pixel size per axis (anisotropic 3D); distances are then in that unit.
    grid_spacing, elastic_sigma : float
        Elastic deformation (defaults 150 and 10 px).
    max_angle : float
        Rotation angle is uniform in ``[0, max_angle)``.
    image_order : int
        Spline order for the image (1 linear, 3 cubic).
    n_knots, intensity_strength : int, float
        Intensity curve parameters (:func:`intensity_curve`).
    border : {"mirror", "zeros"}
        What the tile shows beyond the image border: the mirror image (``"mirror"``, as
        DeepImageJ's mirror padding) or zeros (``"zeros"``: the darkest value of an image
        normalised to [0, 1]; classes and weights are 0 there, i.e. ignored). Train with what the
        bundle will see when it runs (:attr:`deepimagej.bundle.spec.ModelSpec.border`).

    Returns
    -------
    image_tile : numpy.ndarray
        ``float32``, ``in_shape`` (+ channels).
    class_tile : numpy.ndarray
        Same dtype as ``classes``, ``out_shape``.
    weight_tile : numpy.ndarray
        ``float32``, ``out_shape``.
    """
    rng = _rng(rng)
    classes = np.asarray(classes)
    weights = np.asarray(weights)
    image = np.asarray(image)
    ndim = classes.ndim
    if border not in BORDER_MODES:
        raise ValueError(f"border={border!r}: use one of {', '.join(BORDER_MODES)}")
    if (
        weights.shape != classes.shape
        or image.shape[:ndim] != classes.shape
        or image.ndim not in (ndim, ndim + 1)
    ):
        raise TrainingError(
            f"image {image.shape}, classes {classes.shape} and weights {weights.shape} must have the same size"
        )
    out_shape = tuple(int(n) for n in out_shape)
    in_shape = out_shape if in_shape is None else tuple(int(n) for n in in_shape)
    if len(out_shape) != ndim or len(in_shape) != ndim or any(i < o for i, o in zip(in_shape, out_shape)):
        raise ValueError(f"in_shape {in_shape} must be >= out_shape {out_shape}, both with {ndim} axes")
    if center is None:
        center = sample_tile_center(weights if pdf is None else pdf, rng)
    rot = random_rotation(rng, ndim, max_angle) if rotation else None
    disp = (
        elastic_field(in_shape, grid_spacing, elastic_sigma, rng, element_size=element_size)
        if elastic
        else None
    )
    coords = coordinate_map(center, in_shape, rot, disp, element_size)
    out_coords = _crop_center(coords, out_shape)

    mode = "reflect" if border == "mirror" else "constant"
    if image.ndim == ndim:
        img_tile = ndi.map_coordinates(image.astype(np.float32), coords, order=image_order, mode=mode)
    else:
        img_tile = np.stack(
            [
                ndi.map_coordinates(image[..., c].astype(np.float32), coords, order=image_order, mode=mode)
                for c in range(image.shape[-1])
            ],
            axis=-1,
        )
    cls_tile = ndi.map_coordinates(classes, out_coords, order=0, mode=mode)
    w_tile = ndi.map_coordinates(weights.astype(np.float32), out_coords, order=1, mode=mode)
    if intensity:
        img_tile = intensity_curve(
            img_tile, rng, n_knots, intensity_strength, channel_axis=-1 if image.ndim > ndim else None
        )
    return img_tile.astype(np.float32), cls_tile.astype(classes.dtype), w_tile.astype(np.float32)


@dataclass
class Augmenter:
    """Callable holding the settings of :func:`augment_sample`.

    Examples
    --------
    >>> aug = Augmenter(out_shape=(100, 100), in_shape=(188, 188))          # doctest: +SKIP
    >>> x, y, w = aug(image, classes, weights, rng, pdf=w_bal)              # doctest: +SKIP
    """

    out_shape: tuple[int, ...]
    in_shape: tuple[int, ...] | None = None
    rotation: bool = True
    elastic: bool = True
    intensity: bool = True
    element_size: tuple[float, ...] | None = None
    grid_spacing: float = GRID_SPACING
    elastic_sigma: float = ELASTIC_SIGMA
    max_angle: float = 2 * np.pi
    image_order: int = 1
    n_knots: int = 5
    intensity_strength: float = 0.5
    border: str = "mirror"

    def __call__(self, image, classes, weights, rng=None, pdf=None, center=None):
        """Return ``(image_tile, class_tile, weight_tile)``; see :func:`augment_sample`."""
        return augment_sample(
            image,
            classes,
            weights,
            rng,
            out_shape=self.out_shape,
            in_shape=self.in_shape,
            pdf=pdf,
            center=center,
            rotation=self.rotation,
            elastic=self.elastic,
            intensity=self.intensity,
            element_size=self.element_size,
            grid_spacing=self.grid_spacing,
            elastic_sigma=self.elastic_sigma,
            max_angle=self.max_angle,
            image_order=self.image_order,
            n_knots=self.n_knots,
            intensity_strength=self.intensity_strength,
            border=self.border,
        )
