"""Frozen linear segmentation probe: sanity (trivial features -> ~100% mIoU, noise -> chance) and mechanics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixelssl.config import ConfigError
from pixelssl.errors import DataError
from pixelssl.evaluate.common import Subset
from pixelssl.evaluate.probe import LinearProbeHead, ProbeConfig, interpolation_rows, linear_probe, sampled_upsample

FAST = dict(epochs=15, batch_size=8, device="cpu", threads=1)


def test_probe_reaches_full_miou_when_features_encode_the_class(block_scenes, onehot_backbone):
    result = linear_probe(onehot_backbone(4), block_scenes(24, seed=0), block_scenes(8, seed=1), ProbeConfig(**FAST))
    assert result["miou"] > 0.97
    assert result["pixel_acc"] > 0.98
    assert result["class_names"] == ["c0", "c1", "c2", "c3"]
    assert set(result["timing"]) == {"features_s", "train_s", "eval_s", "total_s"}


def test_probe_is_near_chance_on_noise_features(block_scenes, noise_backbone):
    result = linear_probe(noise_backbone(), block_scenes(24, seed=0), block_scenes(8, seed=1), ProbeConfig(**FAST))
    assert result["miou"] < 0.25  # 4 balanced classes: chance is ~0.14
    assert result["pixel_acc"] < 0.45


def test_probe_is_deterministic_for_a_seed(block_scenes, noise_backbone):
    runs = [linear_probe(noise_backbone(), block_scenes(16), block_scenes(4, seed=1), ProbeConfig(**FAST))
            for _ in range(2)]
    assert runs[0]["per_class_iou"] == runs[1]["per_class_iou"]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]


def test_concatenated_levels_and_void_pixels(block_scenes, onehot_backbone):
    cfg = ProbeConfig(levels=["c4", "c5"], train_label_stride=2, **FAST)
    result = linear_probe(onehot_backbone(3), block_scenes(16, num_classes=3, void_fraction=0.3),
                          block_scenes(4, num_classes=3, seed=1, void_fraction=0.3), cfg)
    assert result["miou"] > 0.97
    assert result["levels"] == ["c4", "c5"]


def test_augmented_probe_trains(block_scenes, onehot_backbone):
    cfg = ProbeConfig(augment=True, epochs=4, batch_size=4, device="cpu", threads=1)
    cfg.augmentation.crop_size = [64, 64]
    cfg.augmentation.scale_range = [1.0, 1.0]
    result = linear_probe(onehot_backbone(4), block_scenes(8), block_scenes(4, seed=1), cfg)
    assert result["miou"] > 0.5


def test_sampled_upsample_equals_full_upsample_then_subsample():
    logits = torch.randn(2, 3, 5, 7)
    full = F.interpolate(logits, size=(37, 50), mode="bilinear", align_corners=False)
    for stride in (1, 3, 4):
        rows, cols = interpolation_rows(5, 37, stride), interpolation_rows(7, 50, stride)
        off = stride // 2
        assert torch.allclose(sampled_upsample(logits, rows, cols), full[:, :, off::stride, off::stride], atol=1e-5)


def test_head_over_levels_equals_one_conv_over_concatenated_resized_features():
    head = LinearProbeHead({"c4": 3, "c5": 2}, num_classes=4).eval()
    for conv in head.classifiers.values():
        torch.nn.init.normal_(conv.weight)
    torch.nn.init.normal_(head.classifiers["c4"].bias)
    feats = {"c4": torch.randn(1, 3, 8, 8), "c5": torch.randn(1, 2, 4, 4)}
    up = F.interpolate(feats["c5"], size=(8, 8), mode="bilinear", align_corners=False)
    weight = torch.cat([head.classifiers["c4"].weight, head.classifiers["c5"].weight], dim=1)
    expected = F.conv2d(torch.cat([feats["c4"], up], dim=1), weight, head.classifiers["c4"].bias)
    assert torch.allclose(head(feats), expected, atol=1e-5)


def test_out_of_range_label_names_the_item(block_scenes, onehot_backbone):
    data = block_scenes(4)
    data.labels[2, 0, 0] = 9
    with pytest.raises(DataError, match="block_002: label value 9"):
        linear_probe(onehot_backbone(4), data, block_scenes(2, seed=1), ProbeConfig(**FAST))


def test_unknown_level_is_a_config_error(block_scenes, onehot_backbone):
    with pytest.raises(ConfigError, match="levels"):
        linear_probe(onehot_backbone(4), block_scenes(2), block_scenes(2), ProbeConfig(levels=["c3"], **FAST))


def test_subset_keeps_the_dataset_protocol(block_scenes):
    data = block_scenes(6)
    part = Subset(data, [1, 4])
    assert len(part) == 2 and part.name(1) == "block_004"
    assert (part.num_classes, part.ignore_index, part.class_names) == (4, 255, data.class_names)
    assert torch.equal(part[1][1], data[4][1])
