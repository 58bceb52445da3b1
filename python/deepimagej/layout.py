"""The user's image and the model's tensors: axes, items, and the order outputs come back in.

Axes are named with bioimage.io letters. The user's image for an input comes with its own axes
(``"yx"``, ``"yxc"``, ``"zyx"``, ``"tczyx"``...); :class:`Layout` maps them once onto the input's
axes: axes the model does not have (``t``, ``z`` for a 2D model, ``b``) become *items* of the
batch, a missing channel axis becomes a channel of size 1. Each output comes back in the axis
order of the input it follows (:class:`OutputAxes`), in memory (:meth:`Layout.from_model`) or
written block by block into a store in that order (:class:`UserOrder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from deepimagej.bundle.spec import ModelSpec, TensorSpec
from deepimagej.errors import InputImageError

__all__ = ["Layout", "OutputAxes", "UserOrder", "guess_axes", "is_lazy", "lazy_view"]


def guess_axes(shape: tuple[int, ...], spec: ModelSpec, tensor: TensorSpec | None = None) -> str:
    """Guess the axes of an image from its shape and the model input it is for.

    2D -> ``yx``; 3D -> ``yxc``/``cyx`` when one end matches the model's channel count,
    else ``zyx`` (3D model) or a stack of 2D slices (``byx``); 4D -> ``zyxc``/``czyx``/``bzyx``.
    """
    tensor = spec.inputs[0] if tensor is None else tensor
    n_channels = _channel_count(tensor)
    has_z = tensor.has_axis("z")
    stack = "z" if has_z else "b"
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        if n_channels and n_channels > 1 and shape[-1] == n_channels:
            return "yxc"
        if n_channels and n_channels > 1 and shape[0] == n_channels:
            return "cyx"
        if shape[-1] in (3, 4) and n_channels == shape[-1]:
            return "yxc"
        return stack + "yx"
    if len(shape) == 4:
        if n_channels and shape[-1] == n_channels and shape[0] != n_channels:
            return stack + "yxc"
        if n_channels and shape[0] == n_channels:
            return "c" + stack + "yx"
        return "b" + ("zyx" if has_z else "cyx")
    if len(shape) == 5:
        return "bzyxc" if tensor.axis_names.endswith("c") else "bczyx"
    raise InputImageError(
        f"cannot guess the axes of an image with shape {shape}: pass axes, e.g. axes='tzyx'"
    )


def _channel_count(tensor: TensorSpec) -> int | None:
    if not tensor.has_axis("c"):
        return None
    axis = tensor.axis("c")
    return axis.size if axis.size is not None else (axis.min if axis.step == 0 else None)


@dataclass(frozen=True)
class Layout:
    """How the user's image maps onto a model tensor (computed once per run).

    Attributes:
        user_axes: the user's axes, e.g. ``"tyx"``.
        batch_axes: user axes folded into the model batch (items), in user order, e.g. ``"t"``.
        model_axes: the tensor's axes, with ``b`` in front when the model has no batch axis
            (a model without one is called one item at a time).
    """

    user_axes: str
    batch_axes: str
    model_axes: str

    @classmethod
    def of(cls, user_axes: str, tensor: TensorSpec) -> Layout:
        model_axes = tensor.axis_names
        if "b" not in model_axes:
            model_axes = "b" + model_axes
        batch = "".join(a for a in user_axes if a not in model_axes or a == "b")
        return cls(user_axes, batch, model_axes)

    def to_model(self, image: Any) -> Any:
        """Reorder the user's image into the model axes, folding extra axes into ``b`` (a view where possible;
        a lazy array stays lazy)."""
        user = self.user_axes
        if is_lazy(image) and not _is_dask(image) and len(self.batch_axes) <= 1:
            # a zarr/TIFF array: reorder by index translation, so a window read reads only its region
            return AxisView(
                image,
                tuple(
                    (user.index(self.batch_axes) if self.batch_axes else None)
                    if a == "b"
                    else (user.index(a) if a in user else None)
                    for a in self.model_axes
                ),
            )
        if is_lazy(image):
            image = lazy_view(image)
        order = [user.index(a) for a in self.batch_axes]
        rest = [a for a in self.model_axes if a != "b"]
        order += [user.index(a) for a in rest if a in user]
        arr = np.transpose(image, order)
        n_batch = (
            int(np.prod([image.shape[user.index(a)] for a in self.batch_axes])) if self.batch_axes else 1
        )
        inner = [image.shape[user.index(a)] if a in user else 1 for a in rest]
        arr = arr.reshape([n_batch, *inner])
        current = "b" + "".join(rest)
        return np.transpose(arr, [current.index(a) for a in self.model_axes])

    def output_axes(self, out_axes: str, out_shape: tuple[int, ...]) -> OutputAxes:
        """How a model output (axes ``out_axes`` with ``b``, shape ``out_shape``) maps onto the user's axes."""
        user = self.user_axes
        target = [a for a in user if a not in self.batch_axes]
        for i, a in enumerate(out_axes):
            if a != "b" and a not in target and out_shape[i] > 1:
                target.append(a)
        dropped = "".join(a for a in out_axes if a not in target and a != "b")  # size 1
        added = "".join(a for a in target if a not in out_axes)  # e.g. the image had c, the output lacks it
        current = self.batch_axes + "".join(target)
        final = "".join([a for a in user if a in current] + [a for a in target if a not in user])
        return OutputAxes(out_axes, "".join(target), dropped, added, self.batch_axes, final)

    def from_model(
        self, output: np.ndarray, out_axes: str, image_shape: tuple[int, ...]
    ) -> tuple[np.ndarray, str]:
        """Inverse of :meth:`to_model` for a model output (axes ``out_axes``, with ``b``).

        Returns:
            The output in the user's axis order, and its axes: the user's axes (their size where
            the model changed it), plus output axes the image did not have (``c`` when the
            model returns several channels, an index axis...) at the end; output axes of size 1
            that the image did not have are dropped.
        """
        mapping = self.output_axes(out_axes, output.shape)
        axes = out_axes
        for a in mapping.dropped:
            output = output.take(0, axis=axes.index(a))
            axes = axes.replace(a, "")
        for a in mapping.added:
            output = output[..., np.newaxis]
            axes += a
        output = np.transpose(output, [axes.index(a) for a in "b" + mapping.target])
        batch_shape = [image_shape[self.user_axes.index(a)] for a in self.batch_axes]
        output = output.reshape(batch_shape + list(output.shape[1:]))
        current = self.batch_axes + mapping.target
        return np.transpose(output, [current.index(a) for a in mapping.final]), mapping.final


@dataclass(frozen=True)
class OutputAxes:
    """A model output's axes next to the user's (see :meth:`Layout.output_axes`).

    Attributes:
        out_axes: the model output's axes, with ``b``.
        target: the output's axes besides the items, in the order they take.
        dropped: model output axes of size 1 that the user's image did not have.
        added: user axes (size 1) the model output lacks.
        batch_axes: user axes the items unfold into.
        final: the axes of the output the user gets.
    """

    out_axes: str
    target: str
    dropped: str
    added: str
    batch_axes: str
    final: str

    def final_shape(self, model_shape: tuple[int, ...], batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        sizes = {a: n for a, n in zip(self.out_axes, model_shape) if a != "b"}
        sizes.update(dict.fromkeys(self.added, 1))
        sizes.update(zip(self.batch_axes, batch_shape))
        return tuple(sizes[a] for a in self.final)


class UserOrder:
    """A model-layout view (the output's axes, with ``b``) of an output stored in the user's axis order.

    The :class:`~deepimagej.tiling.Stitcher` writes tiles through it into a store laid out as
    the user gets the output (``mapping.final``), item ``k`` along ``b`` landing at its position
    along the user's stack/time axes.
    """

    def __init__(
        self, target: Any, mapping: OutputAxes, model_shape: tuple[int, ...], batch_shape: tuple[int, ...]
    ):
        self.target = target
        self.mapping = mapping
        self.shape = model_shape
        self.batch_shape = batch_shape

    def __setitem__(self, index: tuple[Any, ...], value: np.ndarray) -> None:
        m = self.mapping
        value = np.asarray(value)
        axes = "".join(a for a, i in zip(m.out_axes, index) if not isinstance(i, (int, np.integer)))
        positions = dict(zip(m.out_axes, index))
        for a in m.dropped:
            if a in axes:
                value = value.take(0, axis=axes.index(a))
                axes = axes.replace(a, "")
        for a in m.added:
            value = value[..., np.newaxis]
            axes += a
        item = positions["b"]
        unravelled = (
            dict(zip(m.batch_axes, np.unravel_index(int(item), self.batch_shape))) if m.batch_axes else {}
        )
        final_index: list[Any] = []
        for a in m.final:
            if a in unravelled:
                final_index.append(int(unravelled[a]))
            elif a in m.added:
                final_index.append(slice(None))
            else:
                final_index.append(positions[a])
        order = [axes.index(a) for a in m.final if a not in unravelled]
        self.target[tuple(final_index)] = np.transpose(value, order)


def is_lazy(array: Any) -> bool:
    """Whether ``array`` is read on demand (zarr, dask...) rather than held in memory."""
    return not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "dtype")


def _is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask.")


@dataclass(frozen=True)
class AxisView:
    """A lazily read array (zarr, a TIFF's zarr store) seen in another axis order, with unit axes
    added: indexing it with slices reads only that region of ``base``, then reorders it.

    Attributes:
        base: the array read on demand.
        order: for each axis of the view, the ``base`` axis it is, or ``None`` for an added axis of size 1.
    """

    base: Any
    order: tuple[int | None, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(1 if o is None else int(self.base.shape[o]) for o in self.order)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.base.dtype)

    @property
    def ndim(self) -> int:
        return len(self.order)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        if len(index) != self.ndim or not all(isinstance(i, slice) for i in index):
            raise TypeError(f"AxisView takes one slice per axis ({self.ndim}), got {index!r}")
        base_index = [slice(None)] * len(self.base.shape)
        for axis, item in zip(self.order, index):
            if axis is not None:
                base_index[axis] = item
        block = np.asarray(self.base[tuple(base_index)])
        kept = [axis for axis in self.order if axis is not None]
        block = np.transpose(block, [sorted(kept).index(axis) for axis in kept])
        sizes = [len(range(1)[item]) if axis is None else None for axis, item in zip(self.order, index)]
        shape, it = [], iter(block.shape)
        for size in sizes:
            shape.append(size if size is not None else next(it))
        return block.reshape(shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[tuple(slice(None) for _ in self.order)]
        return whole if dtype is None else whole.astype(dtype)


def lazy_view(array: Any) -> Any:
    """A lazy array that numpy's transpose/reshape act on without reading it (dask)."""
    import dask.array as da

    return (
        array
        if isinstance(array, da.Array)
        else da.from_array(array, chunks=getattr(array, "chunks", "auto"))
    )
