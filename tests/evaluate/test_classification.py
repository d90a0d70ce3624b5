"""Image-level linear classification probe on a tiny folder-per-class dataset."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from pixelssl.errors import DataError
from pixelssl.evaluate.classification import (
    ClsProbeConfig,
    ImageFolderDataset,
    linear_probe_classification,
    topk_accuracy,
)

LEVEL = 60  # the red value step per class that the one-hot test backbone decodes


def make_folder(root, classes, per_class, size=40, seed=0):
    """root/<class>/<k>.png whose red channel encodes the class and the rest is noise (sizes vary)."""
    generator = torch.Generator().manual_seed(seed)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            h, w = size + k % 3, size + 2 * (k % 2)
            pixels = torch.randint(0, 256, (h, w, 3), generator=generator, dtype=torch.uint8)
            pixels[..., 0] = index * LEVEL + 20
            Image.fromarray(pixels.numpy()).save(root / name / f"{k}.png")
    return root


@pytest.fixture
def folders(tmp_path):
    classes = ["ant", "bee", "cat"]
    return make_folder(tmp_path / "train", classes, 6), make_folder(tmp_path / "val", classes, 3, seed=1)


def test_classification_probe_is_perfect_when_features_encode_the_class(folders, onehot_backbone):
    train = ImageFolderDataset(folders[0])
    val = ImageFolderDataset(folders[1], classes=train.classes)
    cfg = ClsProbeConfig(resize=40, crop=32, epochs=30, batch_size=8, device="cpu", threads=1)
    result = linear_probe_classification(onehot_backbone(3), train, val, cfg)
    assert result["top1"] == 1.0
    assert result["top5"] is None  # fewer than 6 classes
    assert result["class_names"] == ["ant", "bee", "cat"] and result["num_val"] == 9


def test_image_folder_layout_errors_name_the_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        ImageFolderDataset(tmp_path / "flat")
    (tmp_path / "one" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match="empty holds no images"):
        ImageFolderDataset(tmp_path / "one")


def test_val_class_unknown_to_training_is_an_error(tmp_path):
    make_folder(tmp_path / "val", ["ant", "dog"], 1)
    with pytest.raises(DataError, match="dog is a class the training set does not have"):
        ImageFolderDataset(tmp_path / "val", classes=["ant", "bee"])


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_accuracy(logits, targets, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, targets, 2) == pytest.approx(2 / 3)
