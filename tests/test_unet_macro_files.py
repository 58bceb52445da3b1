"""The U-Net post-processing macros are .ijm files shipped in the package, their settings set by Python.

What they compute is tested in ImageJ (test_unet_macro.py: each macro against its Python twin);
here, without Java: every macro loads from the package, is a clean macro a bundle may carry, and
the detection macro's settings land in its parameter lines, the shipped file being exactly the
macro with the Python defaults.
"""

from __future__ import annotations

import pytest

from deepimagej.audit.macro_language import syntax_errors
from deepimagej.audit.macros import audit_macro
from deepimagej.unet.postprocess import (
    CELL_DEFAULTS,
    DETECTION_DEFAULTS,
    MACRO_FILES,
    detection_macro,
    set_macro_parameters,
    shipped_macro,
    write_macro,
)


@pytest.mark.parametrize("kind", sorted(MACRO_FILES))
def test_each_shipped_macro_loads_and_is_a_clean_bundle_macro(kind, tmp_path):
    text = shipped_macro(kind)
    assert text.startswith("// deepimagej U-Net") and text.endswith(";\n")
    assert syntax_errors(text) == []
    assert audit_macro(text, MACRO_FILES[kind]) == []  # nothing a confined bundle macro may not do
    if kind != "detection":
        write_macro(kind, tmp_path / MACRO_FILES[kind])
        assert (tmp_path / MACRO_FILES[kind]).read_text(encoding="utf-8") == text  # written as shipped


def test_the_shipped_detection_macro_holds_the_python_defaults():
    assert shipped_macro("detection") == detection_macro(**DETECTION_DEFAULTS)  # no cell head: -1


def test_detection_settings_are_written_into_the_parameter_lines(tmp_path):
    path = tmp_path / MACRO_FILES["detection"]
    write_macro("detection", path, {"threshold": 0.6, "min_distance": 5, "cell_threshold": 0.8})
    text = path.read_text(encoding="utf-8")
    head = [line for line in text.splitlines() if not line.startswith("//")][:6]
    assert head == [
        "threshold = 0.6;",
        "sigma = 1.0;",
        "radius = 5;",
        "cell_threshold = 0.8;",
        f"min_cell_area = {CELL_DEFAULTS['min_cell_area']};",
        f"min_solidity = {CELL_DEFAULTS['min_solidity']};",
    ]
    shipped = shipped_macro("detection").splitlines()
    assert len(text.splitlines()) == len(shipped)
    changed = [new for old, new in zip(shipped, text.splitlines()) if old != new]
    assert changed == ["threshold = 0.6;", "radius = 5;", "cell_threshold = 0.8;"]  # nothing else
    assert syntax_errors(text) == []


def test_a_parameter_the_macro_does_not_read_is_an_error():
    with pytest.raises(ValueError, match="no line 'sigma_typo = ...;'"):
        set_macro_parameters(shipped_macro("detection"), {"sigma_typo": 2.0})
    # only a top-level assignment is a parameter line: `v = getPixel(x, y);` inside a loop is not
    assert set_macro_parameters("x = 1;\n  v = 2;\nv = 3;\n", {"v": 9}) == "x = 1;\n  v = 2;\nv = 9;\n"
    with pytest.raises(ValueError, match="no post-processing macro of kind 'watershed'"):
        shipped_macro("watershed")
