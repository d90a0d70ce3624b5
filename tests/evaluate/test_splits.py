"""evaluate.splits: train / val splits of the synthetic scenes or of folders; the errors name the folder."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pixelssl.config import load_config
from pixelssl.errors import DataError, PixelSSLError
from pixelssl.evaluate.splits import (
    SyntheticEvalConfig,
    SyntheticEvalSection,
    classification_data,
    segmentation_data,
)


def _segmentation_split(root, names=("a", "b")):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name in names:
        Image.new("RGB", (8, 6), (10, 20, 30)).save(root / "images" / f"{name}.png")
        Image.new("L", (8, 6), 1).save(root / "labels" / f"{name}.png")


def test_synthetic_splits_follow_the_synthetic_section_and_never_share_scenes():
    keys = ["synthetic.train_images=3", "synthetic.val_images=2", "synthetic.size=32", "synthetic.num_classes=2",
            "synthetic.seed=4"]
    cfg = load_config(SyntheticEvalSection, None, keys).synthetic  # as the evaluation commands load it
    train, val, described = segmentation_data("synthetic", None, cfg)
    assert (len(train), len(val)) == (3, 2)
    assert described == {"train": "synthetic:train", "val": "synthetic:val", "synthetic": {
        "train_images": 3, "val_images": 2, "size": 32, "num_classes": 2, "seed": 4}}
    assert not torch.equal(train[0][0], val[0][0])  # scene 0 of each split differs
    with pytest.raises(PixelSSLError, match="--val cannot be combined with --data synthetic"):
        segmentation_data("synthetic", "elsewhere", cfg)


def test_a_folder_gives_its_train_and_val_sub_folders_or_the_val_given(tmp_path):
    _segmentation_split(tmp_path / "seg" / "train")
    _segmentation_split(tmp_path / "seg" / "val", ("c",))
    train, val, described = segmentation_data(str(tmp_path / "seg"), None, SyntheticEvalConfig())
    assert (len(train), len(val)) == (2, 1)
    assert described == {"train": str((tmp_path / "seg" / "train").resolve()),
                         "val": str((tmp_path / "seg" / "val").resolve())}
    train, val, described = segmentation_data(str(tmp_path / "seg" / "train"), str(tmp_path / "seg" / "val"),
                                              SyntheticEvalConfig())
    assert (len(train), len(val)) == (2, 1) and described["train"].endswith("train")


def test_split_errors_name_the_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = [(tmp_path / "nowhere", "does not exist"), (tmp_path / "file.txt", "is not a folder"),
             (tmp_path / "flat", "has no train/ and val/ sub-folders; pass --val PATH")]
    for root, message in cases:
        with pytest.raises(DataError, match=message) as info:
            segmentation_data(str(root), None, SyntheticEvalConfig())
        assert str(root) in str(info.value)
        with pytest.raises(DataError, match=message):
            classification_data(str(root), None)


def test_classification_splits_use_the_training_classes_for_val(tmp_path):
    for split, classes in (("train", ("cat", "dog")), ("val", ("dog",))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / name / "0.png")
    train, val, _ = classification_data(str(tmp_path), None)
    assert train.classes == val.classes == ["cat", "dog"] and len(val) == 1 and val[0][1] == 1
    with pytest.raises(PixelSSLError, match="probe-cls needs an ImageFolder-layout folder"):
        classification_data("synthetic", None)
