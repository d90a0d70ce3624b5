"""CamVid (shared copy) through the evaluation data path; skipped when the data set is absent."""

from __future__ import annotations

from pixelssl.evaluate.common import Subset
from pixelssl.evaluate.probe import ProbeConfig, linear_probe
from pixelssl.evaluate.splits import SyntheticEvalConfig, segmentation_data
from pixelssl.models.backbones import build_backbone


def test_camvid_loads_with_its_classes_and_void(camvid_root):
    train, val, info = segmentation_data(str(camvid_root), None, SyntheticEvalConfig())
    assert (len(train), len(val)) == (367, 101)
    assert train.num_classes == 11 and train.ignore_index == 11 and train.class_names[0] == "sky"
    image, label = val[0]
    assert image.shape == (3, 360, 480) and label.shape == (360, 480)
    assert int(label.max()) <= 11 and info["val"].endswith("val")


def test_random_backbone_probe_on_a_camvid_subset(camvid_root):
    train, val, _ = segmentation_data(str(camvid_root), None, SyntheticEvalConfig())
    cfg = ProbeConfig(image_size=120, epochs=5, device="cpu", threads=1)
    result = linear_probe(build_backbone("resnet18"), Subset(train, range(0, 367, 12)), Subset(val, range(0, 101, 10)),
                          cfg)
    assert 0.05 < result["miou"] < 1.0
    assert result["pixel_acc"] > 0.4  # sky, road and building are linearly separable even from random features
    assert result["class_names"][3] == "road" and result["num_val"] == 11
