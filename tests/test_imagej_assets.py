"""Every pre/post-processing macro of the DeepImageJ model zoo bundles runs in ImageJ or fails clearly.

Each macro in ../shared/assets/deepimagej_bundles runs on its bundle's example image (a synthetic
64x64 ramp where the bundle has none). None may hang (a 30 s limit) or leak a Java stack trace;
the table below says which fail and why (they need another plugin, a user, or the model's output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepimagej.errors import MacroError

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "deepimagej_bundles"

#: macro -> None (runs) or the reason it fails (a substring of the MacroError)
EXPECTED: dict[str, str | None] = {
    "2du-net_zerocostdl4mic/postprocessing.ijm": None,
    "2du-net_zerocostdl4mic/preprocessing.ijm": None,
    "3du-net_zerocostdl4mic/preprocessing.ijm": None,
    # asks for a folder with getDirectory("Choose ..."): needs a user
    "deepstorm_zerocostdl4mic/DeepSTORM4stacksThunderSTORM.ijm": "getDirectory",
    # "Manual Threshold..." is a Fiji plugin, not in ImageJ 1.x
    "deepstorm_zerocostdl4mic/postprocessing_AveragedMaximaSMLM.ijm": 'Unrecognized command: "Manual Threshold..."',
    "deepstorm_zerocostdl4mic/postprocessing_LocalMaximaSMLM.ijm": 'Unrecognized command: "Manual Threshold..."',
    "deepstorm_zerocostdl4mic/preprocessing.ijm": None,
    "fru-net_sev_segmentation/postprocessing.txt": None,
    "fru-net_sev_segmentation/postprocessingWatershed.txt": None,
    # selects a window titled "i-1mage" that DeepImageJ 2.x created around it
    "fru-net_sev_segmentation/preprocessing.txt": 'No window with the title "i-1mage"',
    "jones_virtual_staining/postprocessing.txt": None,
    "jones_virtual_staining/preprocessing.txt": None,
    "mt3_virtual_staining/postprocessing.txt": None,
    "mt3_virtual_staining/preprocessing.txt": None,
    # expects the model's two-channel output, not the example input
    "mu-lux_ctc_phc-c2dl-psc/postprocessing.txt": "Multichannel image required",
    "mu-lux_ctc_phc-c2dl-psc/preprocessing.txt": None,
    # reads the Results table the classifier fills
    "skin_lesion_classification/post.ijm": "out of range",
    # parses the image title of the original data set
    "skin_lesion_classification/preprocessing.ijm": "beginIndex>endIndex",
    "u-net_glioblastoma_segmentation/postprocessing.txt": None,
    "u-net_glioblastoma_segmentation/preprocessing.txt": None,
    "u-net_hela_segmentation/postprocessing.txt": None,
    "u-net_hela_segmentation/preprocessing.txt": None,
    "u-net_pancreatic_segmentation/binarize.ijm": None,
    "u-net_pancreatic_segmentation/per_sample_scale_range.ijm": None,
    "usiigaci/config.ijm": None,
    # selects the "finalMask" window the model output would be
    "usiigaci/postprocessing.ijm": 'No window with the title "finalMask"',
    "usiigaci/preprocessing.ijm": None,
    "widefield_dapi_super-resolution/postprocessing.txt": None,
    "widefield_dapi_super-resolution/preprocessing.txt": None,
    "widefield_fitc_super-resolution/postprocessing.txt": None,
    "widefield_fitc_super-resolution/preprocessing.txt": None,
    "widefield_txred_super-resolution/postprocessing.txt": None,
    "widefield_txred_super-resolution/preprocessing.txt": None,
}


def _macros() -> list[str]:
    if not ASSETS.is_dir():
        return []
    return sorted(str(p.relative_to(ASSETS)) for p in [*ASSETS.rglob("*.txt"), *ASSETS.rglob("*.ijm")])


def test_every_macro_is_listed():
    if not ASSETS.is_dir():
        pytest.skip(f"{ASSETS} not found")
    assert _macros() == sorted(EXPECTED)


@pytest.mark.imagej
@pytest.mark.parametrize("macro", sorted(EXPECTED))
def test_zoo_macro(ij, macro):
    path = ASSETS / macro
    if not path.is_file():
        pytest.skip(f"{path} not found")
    examples = sorted(
        p for p in path.parent.iterdir() if p.stem == "exampleImage" and p.suffix in (".tif", ".tiff")
    )
    image = examples[0] if examples else np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    expected = EXPECTED[macro]
    if expected is None:
        res = ij.run_macro(path, image, timeout=30)
        assert res.image is not None
    else:
        with pytest.raises(MacroError) as err:
            ij.run_macro(path, image, timeout=30)
        assert expected in str(err.value)
        assert "\tat " not in str(err.value) and "java.lang" not in str(err.value)
