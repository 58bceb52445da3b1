"""The files of a training set: images through deepimagej.io, folder pairing, validation split."""

from __future__ import annotations

import pytest

from deepimagej.errors import DeepImageJError, TrainingError
from deepimagej.unet.files import load_folder_pairs, load_image, split_validation
from deepimagej.unet.points import points_from_rois
from deepimagej.unet.targets import rois_to_labels


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_load_folder_pairs(tmp_path):
    imgs, labs = tmp_path / "images", tmp_path / "labels"
    imgs.mkdir()
    labs.mkdir()
    for n in (10, 2, 1):
        (imgs / f"{n}.png").write_bytes(b"")
    (labs / "1.png").write_bytes(b"")
    (labs / "2_mask.tif").write_bytes(b"")
    (labs / "10.zip").write_bytes(b"")
    (imgs / "notes.txt").write_text("x")
    pairs = load_folder_pairs(imgs, labs)
    assert [(a.name, b.name) for a, b in pairs] == [
        ("1.png", "1.png"),
        ("2.png", "2_mask.tif"),
        ("10.png", "10.zip"),
    ]
    (imgs / "3.png").write_bytes(b"")
    with pytest.raises(TrainingError) as e:
        load_folder_pairs(imgs, labs)
    assert "'3.png'" in one_line(e)
    with pytest.raises(TrainingError) as e:
        load_folder_pairs(tmp_path / "nope", labs)
    assert "does not exist" in one_line(e)


def test_isbi_folder_pairs(assets):
    pairs = load_folder_pairs(
        assets / "isbi2012_em" / "train" / "image", assets / "isbi2012_em" / "train" / "label"
    )
    assert len(pairs) >= 24 and pairs[0][0].name == "0.png" and pairs[10][0].name == "10.png"


def test_split_validation():
    train, val = split_validation(list(range(10)), 3)
    assert train == list(range(7)) and val == [7, 8, 9]
    train, val = split_validation(list(range(10)), 0.25)
    assert len(val) == 2 and len(train) == 8  # round(2.5) = 2
    train, val = split_validation(list(range(10)), 2, seed=1)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert split_validation([1], 0) == ([1], [])
    assert split_validation([1, 2], 0.1) == ([1], [2])
    with pytest.raises(TrainingError) as e:
        split_validation([1], 0.2)
    assert "too few" in one_line(e)
    with pytest.raises(TrainingError):
        split_validation([1, 2, 3], 3)


def test_bad_files(tmp_path):
    with pytest.raises(DeepImageJError) as e:  # the package's one reader: deepimagej.io.read_image
        load_image(tmp_path / "missing.png")
    assert "missing.png" in one_line(e) and "not found" in one_line(e)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(DeepImageJError) as e:
        load_image(tmp_path / "junk.png")
    assert "junk.png" in one_line(e)
    (tmp_path / "notroi.roi").write_bytes(b"hello, this is not a ROI" * 4)
    with pytest.raises(TrainingError) as e:
        rois_to_labels(tmp_path / "notroi.roi", (10, 10))
    assert "not an ImageJ ROI" in one_line(e)
    (tmp_path / "RoiSet.zip").write_bytes(b"PK garbage")
    with pytest.raises(TrainingError) as e:
        points_from_rois(tmp_path / "RoiSet.zip")
    assert "RoiSet.zip" in one_line(e)
