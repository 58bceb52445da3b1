"""Axis names: DeepImageJ ``NHWC``-style strings and bioimage.io letters.

Inside deepimagej every axis is a bioimage.io letter: ``b`` (batch), ``i`` (index),
``t`` (time), ``c`` (channel), ``z``, ``y``, ``x``. This module converts the other
spellings found in descriptors into those letters, once, when a descriptor is read:

- DeepImageJ 1.x ``InputOrganization0`` strings such as ``NHWC``, ``HWC``, ``NDHWC``;
- bioimage.io 0.3/0.4 axis strings such as ``byxc``;
- bioimage.io 0.5 axis ids and types (``batch``, ``channel``, ``x``, ...).

It also holds the one-line error helpers shared by the descriptor readers.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

from deepimagej.errors import BundleError, InputImageError

#: bioimage.io axis letters deepimagej knows.
AXIS_LETTERS = "bitczyx"

#: DeepImageJ letter -> bioimage.io letter.
DEEPIMAGEJ_LETTERS = {
    "N": "b",
    "B": "b",
    "H": "y",
    "W": "x",
    "C": "c",
    "D": "z",
    "Z": "z",
    "Y": "y",
    "X": "x",
    "T": "t",
}

#: bioimage.io letter -> DeepImageJ letter (used when writing config.xml).
TO_DEEPIMAGEJ_LETTERS = {"b": "N", "y": "H", "x": "W", "c": "C", "z": "D"}

#: bioimage.io 0.5 axis types and default ids -> letter.
V05_AXIS_IDS = {"batch": "b", "channel": "c", "index": "i", "time": "t"}


def one_line(text: str) -> str:
    """Collapse ``text`` onto a single line (errors are always one line)."""
    return " ".join(str(text).split())


def field_error(
    source: Path | str, field: str, expected: str, got: Any = None, *, show_got: bool = True
) -> BundleError:
    """Build the standard one-line error for a bad descriptor field.

    Args:
        source: descriptor file (only its path is shown).
        field: field path, e.g. ``ModelCharacteristics/MinimumSize`` or ``inputs[0].axes``.
        expected: what the field must be, e.g. ``"a positive integer"``.
        got: the value found (shown with ``repr``); ``None`` means the field is missing.
        show_got: set to ``False`` to omit the ``got`` part.

    Returns:
        A :class:`BundleError` such as
        ``config.xml: field <ModelCharacteristics/MinimumSize> must be a positive integer, got 'abc'``.
    """
    message = f"{source}: field <{field}> must be {expected}"
    if show_got:
        message += ", but it is missing" if got is None else f", got {_short_repr(got)}"
    return BundleError(one_line(message))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 70, 70


def _short_repr(value: Any, limit: int = 80) -> str:
    text = _REPR.repr(value)  # bounded: a hostile value may be huge or deeply nested
    return text if len(text) <= limit else text[: limit - 3] + "..."


def deepimagej_axes(org: str, *, source: Path | str = "config.xml", field: str = "InputOrganization0") -> str:
    """Convert a DeepImageJ axes string to bioimage.io letters.

    ``N`` -> ``b``, ``H`` -> ``y``, ``W`` -> ``x``, ``C`` -> ``c``, ``D`` -> ``z``; the letters
    ``B``, ``Z``, ``Y``, ``X``, ``T`` stand for themselves.

    Examples:
        >>> deepimagej_axes("NHWC")
        'byxc'
        >>> deepimagej_axes("NDHWC")
        'bzyxc'

    Args:
        org: the DeepImageJ string, e.g. ``"NHWC"`` (case-insensitive, blanks and commas ignored).
        source: descriptor named in errors.
        field: field named in errors.

    Raises:
        BundleError: unknown letters, repeated axes or an empty string.
    """
    if not isinstance(org, str):
        raise field_error(source, field, "a string of axis letters such as NHWC", org)
    cleaned = org.replace(",", "").replace(" ", "").upper()
    expected = "a string of DeepImageJ axis letters (N, H, W, C, D) such as NHWC"
    if not cleaned:
        raise field_error(source, field, expected, org)
    bad = [ch for ch in cleaned if ch not in DEEPIMAGEJ_LETTERS]
    if bad:
        raise field_error(source, field, expected + f" (unknown letter {bad[0]!r})", org)
    letters = "".join(DEEPIMAGEJ_LETTERS[ch] for ch in cleaned)
    _check_unique(letters, source, field, org)
    return letters


def normalize_axes(axes: Any, *, source: Path | str = "rdf.yaml", field: str = "axes") -> str:
    """Validate and normalise a bioimage.io axes string such as ``"byxc"``.

    Accepts a string (0.3/0.4) or a list of single letters / 0.5 axis ids such as
    ``["x", "y"]`` or ``["channel"]``. Returns lower-case letters among ``bitczyx``.

    Raises:
        BundleError: unknown letters, repeated axes or a value of the wrong type.
    """
    expected = "axis letters among b, i, t, c, z, y, x without repeats (e.g. 'byxc')"
    if isinstance(axes, (list, tuple)):
        try:
            letters = "".join(axis_id_letter(a) for a in axes)
        except (TypeError, ValueError):
            raise field_error(source, field, expected, axes) from None
    elif isinstance(axes, str):
        letters = axes.strip().lower()
    else:
        raise field_error(source, field, expected, axes)
    if not letters or any(ch not in AXIS_LETTERS for ch in letters):
        raise field_error(source, field, expected, axes)
    _check_unique(letters, source, field, axes)
    return letters


def image_axes(axes: Any, ndim: int, *, letters: str = "btczyx", required: str = "") -> str:
    """Check the axes a user gives for an image (``"yx"``, ``"Z,Y,X"``, ``"nyxc"``) and return its letters.

    The one check of user-given image axes (Python API, CLI, ImageJ macros): case, commas and
    spaces do not matter, DeepImageJ's ``n`` (batch) is ``b``; the letters must be distinct,
    among ``letters``, one per dimension of the image, and include ``required``.

    Args:
        axes: the axes as given.
        ndim: the image's number of dimensions.
        letters: the axis letters allowed (ImageJ images: ``tczyx``).
        required: letters the image must have (``"yx"`` for an image; the model's own needs
            are checked by :func:`deepimagej.bundle.validate.check_input`).

    Raises:
        InputImageError: one line saying what is wrong.
    """
    if not isinstance(axes, str):
        raise InputImageError(f"image axes must be a string such as 'yx' or 'zyxc', got {axes!r}")
    found = "".join({"n": "b"}.get(a, a) for a in axes.lower() if a not in ", ")
    if len(found) != ndim:
        raise InputImageError(f"axes '{axes}' name {len(found)} dimension(s) but the image has {ndim}")
    if len(set(found)) != len(found) or not set(found) <= set(letters):
        raise InputImageError(f"axes '{axes}' must be distinct letters among {', '.join(letters)}")
    if not set(required) <= set(found):
        raise InputImageError(f"axes '{axes}' must include {' and '.join(required)}")
    return found


def axis_id_letter(axis_id: Any) -> str:
    """Letter for a bioimage.io 0.5 axis id (``"channel"`` -> ``"c"``, ``"y"`` -> ``"y"``).

    Raises:
        TypeError: the id is not a string.
        ValueError: the id is not an axis deepimagej can name.
    """
    if not isinstance(axis_id, str):
        raise TypeError(f"axis id must be a string, got {axis_id!r}")
    key = axis_id.strip().lower()
    if key in V05_AXIS_IDS:
        return V05_AXIS_IDS[key]
    if len(key) == 1 and key in AXIS_LETTERS:
        return key
    raise ValueError(f"unknown axis id {axis_id!r}")


def to_deepimagej_axes(axes: str, *, source: Path | str = "config.xml", field: str = "axes") -> str:
    """Convert bioimage.io letters to a DeepImageJ string (``"byxc"`` -> ``"NHWC"``).

    Raises:
        BundleError: an axis (``t``, ``i``) that DeepImageJ 1.x cannot name.
    """
    bad = [a for a in axes if a not in TO_DEEPIMAGEJ_LETTERS]
    if bad:
        raise field_error(
            source, field, "axes among b, z, y, x, c to be written as a DeepImageJ 1.x config", axes
        )
    return "".join(TO_DEEPIMAGEJ_LETTERS[a] for a in axes)


def _check_unique(letters: str, source: Path | str, field: str, original: Any) -> None:
    seen: set[str] = set()
    for ch in letters:
        if ch in seen:
            raise field_error(source, field, f"axes without repeats (axis {ch!r} appears twice)", original)
        seen.add(ch)
