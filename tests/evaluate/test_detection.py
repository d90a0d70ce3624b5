"""evaluate.detection: fine-tuning a detector: flipped training samples, mask models need masks, and a short run
learns (slow)."""

from __future__ import annotations

import pytest
import torch

from pixelssl.data.coco import CocoDetection
from pixelssl.data.synthetic_coco import export_synthetic_coco
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.detection import DetectionConfig, finetune_detection, hflip
from pixelssl.models.backbones import build_backbone


def _cfg(**overrides):
    return DetectionConfig(**{"min_size": 64, "max_size": 64, **overrides})


# --------------------------------------------------------------------------- data
def test_hflip_mirrors_boxes_and_masks():
    image = torch.zeros(3, 4, 10)
    image[:, :, 2] = 1
    masks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    masks[0, 1:3, 1:4] = 1  # box x 1..4
    target = {"boxes": torch.tensor([[1.0, 1.0, 4.0, 3.0]]), "masks": masks, "labels": torch.tensor([2])}
    flipped_image, flipped = hflip(image, target)
    assert flipped["boxes"].tolist() == [[6.0, 1.0, 9.0, 3.0]]
    cols = flipped["masks"][0].any(0).nonzero().flatten().tolist()
    assert (cols[0], cols[-1] + 1) == (6, 9) and flipped_image[0, 0, 7] == 1
    again_image, again = hflip(flipped_image, flipped)
    assert torch.equal(again_image, image) and torch.equal(again["boxes"], target["boxes"])


# --------------------------------------------------------------------------- end to end
def test_mask_rcnn_needs_masks(coco_root):
    train = CocoDetection(coco_root / "train.json", coco_root / "images")
    with pytest.raises(PixelSSLError, match="mask_rcnn needs datasets read with masks=True"):
        finetune_detection(build_backbone("resnet18"), train, train, _cfg(model="mask_rcnn", steps=1, warmup_steps=0))


@pytest.mark.slow
def test_a_few_hundred_steps_reach_clearly_non_zero_ap(tmp_path):
    """FCOS on the synthetic export learns: box AP well above 0 after 300 CPU steps (several minutes)."""
    export_synthetic_coco(tmp_path, train_images=64, val_images=24, size=96, num_classes=3, seed=0)
    train = CocoDetection(tmp_path / "train.json", tmp_path / "images")
    val = CocoDetection(tmp_path / "val.json", tmp_path / "images")
    cfg = DetectionConfig(model="fcos", norm="bn", trainable_layers=5, fpn_channels=64, min_size=96, max_size=96,
                          steps=300, batch_size=4, lr=0.01, warmup_steps=30, clip_grad_norm=10, threads=1,
                          device="cpu")
    result = finetune_detection(build_backbone("resnet18"), train, val, cfg)
    assert result["train_loss"][-1][1] < result["train_loss"][0][1]
    assert result["bbox"]["AP50"] > 0.05 and result["bbox"]["AP"] > 0.01
