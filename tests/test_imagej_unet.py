"""The "U-Net Train" ImageJ command: annotations made in ImageJ -> a bundle "DeepImageJ Run" executes.

Real ImageJ 1.x (embedded, Xvfb), real macros that fill the ROI Manager, real (tiny) trainings.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from deepimagej.errors import DeepImageJError

pytestmark = pytest.mark.imagej
pytest.importorskip("tensorflow")

TINY = "epochs=1 steps=4 tile=64 depth=2 features=4"
CENTRES = [(20, 22), (24, 70), (60, 30), (70, 74), (44, 50)]


def cells() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.normal(60, 15, (96, 96))
    for cy, cx in CENTRES:
        rr, cc = disk((cy, cx), 8, shape=image.shape)
        image[rr, cc] += 120
    return np.clip(image, 0, 255).astype(np.uint8)


def outline_macro() -> str:
    return 'roiManager("reset");\n' + "".join(
        f'makeOval({cx - 8}, {cy - 8}, 17, 17); roiManager("Add");\n' for cy, cx in CENTRES
    )


def points_macro() -> str:
    xs = ", ".join(str(cx) for _, cx in CENTRES)
    ys = ", ".join(str(cy) for cy, _ in CENTRES)
    return (
        f'roiManager("reset");\nmakeSelection("point", newArray({xs}), newArray({ys}));\nroiManager("Add");\n'
    )


def test_train_from_current_image_and_roi_manager_then_run(ij, tmp_path):
    from deepimagej.bundle import load_bundle

    out = tmp_path / "blob-unet"
    result = ij.run_macro(
        outline_macro()
        + f'run("U-Net Train", "data=[current image + ROI Manager] task=auto output=[{out}] name=blobs {TINY}");\n'
        + f'run("DeepImageJ Run", "model=[{out}] format=Tensorflow axes=Y,X tile=96,96 logging=normal");\n',
        cells(),
    )
    spec = load_bundle(out)
    assert spec.name == "blobs" and "segmentation" in spec.tags and spec.border == "mirror"
    assert "[U-Net Train] one annotated image" in result.log and "bundle written to" in result.log
    # DeepImageJ Run ran the model and the bundle's own post-processing macro: a 16-bit label image
    assert result.image.shape == (96, 96) and result.image.dtype == np.uint16
    assert (out.parent / "blob-unet-training" / "state.json").is_file()  # resumable checkpoint


def test_train_detection_from_point_rois(ij, tmp_path):
    from deepimagej.bundle import load_bundle

    out = tmp_path / "blob-detector"
    ij.run_macro(
        points_macro() + f'run("U-Net Train", "data=[current image + ROI Manager] output=[{out}] '
        f'radius=3 {TINY}");\n',
        cells(),
    )
    spec = load_bundle(out)
    assert "detection" in spec.tags and spec.border == "zeros"
    assert set(spec.extra["detection"]) == {
        "threshold",
        "smooth_sigma",
        "min_distance",
    }  # chosen on validation


def test_train_from_folders(ij, tmp_path):
    import tifffile

    from deepimagej.bundle import load_bundle
    from deepimagej.unet.files import load_folder_pairs

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(2):
        image = np.roll(cells(), 9 * i, axis=1)
        tifffile.imwrite(images / f"cell{i}.tif", image)
        tifffile.imwrite(masks / f"cell{i}.tif", (image > 150).astype(np.uint8) * 255)
    out = tmp_path / "folder-unet"
    result = ij.run_macro(
        f'run("U-Net Train", "data=folders images=[{images}] annotations=[{masks}] task=segmentation '
        f'output=[{out}] {TINY}");\n'
    )
    assert "segmentation: 2 image(s)" in result.log
    assert load_bundle(out).inputs[0].axis_names == "byxc"
    assert load_folder_pairs(images, masks)  # the files were left alone


@pytest.mark.parametrize(
    ("setup", "options", "expect"),
    [
        ('roiManager("reset");\n', "", "ROI Manager is empty"),
        (
            outline_macro() + 'makeSelection("point", newArray(5), newArray(5)); roiManager("Add");\n',
            "",
            "mixes point and area",
        ),
        (outline_macro(), "task=detection", "needs point ROIs"),
        ("", "data=folders images=[/nonexistent/imgs] annotations=[/nonexistent]", "is not a folder"),
        ("", "data=[somewhere else]", "use one of: current image + ROI Manager, folders"),
    ],
    ids=["empty", "mixed", "detection-without-points", "no-folder", "bad-choice"],
)
def test_bad_input_gives_a_one_line_error(ij, tmp_path, setup, options, expect):
    out = tmp_path / "never"
    with pytest.raises(
        DeepImageJError
    ) as info:  # TrainingError, or MacroError for ImageJ's own dialog checks
        ij.run_macro(setup + f'run("U-Net Train", "output=[{out}] {options} {TINY}");\n', cells())
    message = str(info.value)
    assert expect in message and "\n" not in message.strip() and "Exception" not in message
    assert not out.exists()


def test_roi_names_as_classes_ignore_rois_and_the_validation_plot(ij, tmp_path):
    """classes=3: ROI names give the classes, a ROI named 'ignore' does not count; the curve is plotted per epoch."""
    from deepimagej.bundle import load_bundle
    from deepimagej.imagej.commands.train import CURVE_TITLE

    names = ["round", "round", "big", "round", "big"]
    rois = (
        'roiManager("reset");\n'
        + "".join(
            f'makeOval({cx - r}, {cy - r}, {2 * r + 1}, {2 * r + 1}); roiManager("Add"); '
            f'roiManager("select", {i}); roiManager("rename", "{name}");\n'
            for i, ((cy, cx), name, r) in enumerate(zip(CENTRES, names, (8, 8, 8, 8, 8)))
        )
        + 'makeRectangle(80, 0, 16, 16); roiManager("Add"); roiManager("select", 5); roiManager("rename", "ignore");\n'
    )
    out = tmp_path / "classes-unet"
    result = ij.run_macro(
        rois + f'run("U-Net Train", "data=[current image + ROI Manager] output=[{out}] classes=3 '
        f'class_names=[round,big] epochs=2 steps=2 tile=64 depth=2 features=4");\n'
        + f'title = getTitle();\nselectImage("{CURVE_TITLE}");\nPlot.getValues(x, y);\n'
        + 'print("curve points: " + x.length + ", back on " + title);\n',
        cells(),
    )
    assert "segmentation: 1 image(s) from" in result.log and "3 classes" in result.log
    assert (
        "curve points: 2, back on " in result.log
        and "validation curve" not in result.log.split("back on ")[-1]
    )
    spec = load_bundle(out)
    assert any(p.name == "postprocessing_classes.ijm" for p in spec.postprocessing_macros)
    assert (out.parent / "classes-unet-training" / "validation_curve.png").is_file()
