"""Property-based fuzzing of the descriptor parsers (hypothesis), within a time budget of ~20-30 s.

Real descriptors are mutated at random places (values replaced by random YAML/XML content, keys
and elements removed or added) and read back: every outcome must be a :class:`ModelSpec` or a
one-line :class:`BundleError` naming the file, never another exception. The same holds for axis
strings, raw YAML text and image files made of random bytes.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepimagej.bundle import read_descriptor
from deepimagej.bundle.axes import deepimagej_axes, normalize_axes
from deepimagej.bundle.descriptor_yaml import load_yaml
from deepimagej.bundle.spec import ModelSpec
from deepimagej.errors import BundleError, InputImageError
from deepimagej.io import read_image

REPO = Path(__file__).resolve().parents[1]
RDFS = sorted((REPO / "bundles").glob("*/rdf.yaml"))
CONFIGS = sorted((REPO / "bundles").glob("*/config.xml"))
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="deepimagej-fuzz-"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["byxc", "bcyx", "xy", "../x", "/etc/passwd", "-1", "1e300", "nan"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(max_size=12)
            | st.sampled_from(["name", "axes", "shape", "min", "step", "kwargs", "source", "halo"]),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _mutate(data: Any, draw: st.DataObject, depth: int = 0) -> Any:
    """Replace, delete or add one thing somewhere in ``data`` (a parsed descriptor)."""
    if isinstance(data, dict) and data and depth < 8 and draw.draw(st.booleans()):
        key = draw.draw(st.sampled_from(sorted(data, key=str)))
        action = draw.draw(st.sampled_from(["descend", "replace", "delete", "add"]))
        data = dict(data)
        if action == "descend":
            data[key] = _mutate(data[key], draw, depth + 1)
        elif action == "replace":
            data[key] = draw.draw(values)
        elif action == "delete":
            del data[key]
        else:
            data[draw.draw(st.text(max_size=10))] = draw.draw(values)
        return data
    if isinstance(data, list) and data and depth < 8 and draw.draw(st.booleans()):
        index = draw.draw(st.integers(0, len(data) - 1))
        data = list(data)
        data[index] = _mutate(data[index], draw, depth + 1) if draw.draw(st.booleans()) else draw.draw(values)
        return data
    return draw.draw(values)


def _check_outcome(path: Path) -> None:
    try:
        spec = read_descriptor(path)
    except BundleError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert path.name in message or "outside the bundle" in message, message
        return
    assert isinstance(spec, ModelSpec)


@pytest.mark.skipif(not RDFS, reason="no rdf.yaml under bundles/")
@FUZZ
@given(st.data())
def test_mutated_rdf_reads_or_fails_in_one_line(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(RDFS))
    tree = yaml.safe_load(source.read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 4))):
        tree = _mutate(tree, data)
    target = WORK / "rdf.yaml"
    try:
        text = yaml.safe_dump(tree, allow_unicode=True)
    except (yaml.YAMLError, ValueError, OverflowError):
        return  # not representable as YAML: nothing to read
    target.write_text(text, encoding="utf-8")
    _check_outcome(target)


@pytest.mark.skipif(not CONFIGS, reason="no config.xml under bundles/")
@FUZZ
@given(st.data())
def test_mutated_config_xml_reads_or_fails_in_one_line(data: st.DataObject) -> None:
    root = ET.fromstring(data.draw(st.sampled_from(CONFIGS)).read_text(encoding="utf-8"))
    elements = list(root.iter())
    for _ in range(data.draw(st.integers(1, 4))):
        element = data.draw(st.sampled_from(elements))
        action = data.draw(st.sampled_from(["text", "remove", "add", "number"]))
        if action == "text":
            element.text = data.draw(
                st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
            )
        elif action == "number":
            element.text = str(data.draw(st.integers(-(10**20), 10**20) | st.floats(allow_nan=True)))
        elif action == "remove":
            for parent in root.iter():
                if element in list(parent):
                    parent.remove(element)
                    break
        else:
            ET.SubElement(
                element, data.draw(st.sampled_from(["Padding", "MinimumSize", "Channels", "x"]))
            ).text = "7"
    target = WORK / "config.xml"
    target.write_bytes(ET.tostring(root))
    _check_outcome(target)


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=" \n\t-:[]{}&*!|>'\"#%@`,?abc01", max_size=200))
def test_yaml_text_loads_or_fails_in_one_line(text: str) -> None:
    target = WORK / "noise.yaml"
    target.write_text(text, encoding="utf-8")
    try:
        data = load_yaml(target)
    except BundleError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(data, dict)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.lists(st.text(max_size=4) | st.integers(), max_size=6),
        st.integers(),
        st.none(),
    )
)
def test_axis_parsers_return_letters_or_fail_in_one_line(value: Any) -> None:
    for parse in (normalize_axes, deepimagej_axes):
        try:
            axes = parse(value)
        except BundleError as exc:
            assert "\n" not in str(exc)
            continue
        assert isinstance(axes, str) and set(axes) <= set("bitczyx")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([".tif", ".npy", ".png"]))
def test_random_bytes_are_not_an_image(blob: bytes, suffix: str) -> None:
    target = WORK / f"noise{suffix}"
    if suffix == ".npy" and blob[:1] == b"\x00":  # a valid tiny .npy now and then
        np.save(target, np.frombuffer(blob[1:] + bytes(-len(blob[1:]) % 4), dtype=np.float32))
    else:
        target.write_bytes(blob)
    try:
        image = read_image(target)
    except InputImageError as exc:
        assert "\n" not in str(exc)
        return
    assert image.array.ndim == len(image.axes)
