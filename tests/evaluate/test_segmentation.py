"""evaluate.segmentation: fine-tuning heads, dilation, inference modes, overfitting, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelssl.evaluate.segmentation import (
    FinetuneConfig,
    build_segmentation_model,
    evaluate_segmentation,
    finetune_segmentation,
    load_segmentation_model,
    slide_inference,
)
from pixelssl.evaluate.transforms import JointAugmentConfig
from pixelssl.models.backbones import build_backbone

TINY = dict(head_channels=16, fpn_scale_channels=16, device="cpu", threads=1)  # 1 thread: shared 2-core CI


@pytest.mark.parametrize("head", ["fcn", "fpn"])
def test_heads_return_logits_at_input_resolution(head):
    model = build_segmentation_model(build_backbone("resnet18"), 5, FinetuneConfig(head=head, **TINY))
    assert model(torch.randn(2, 3, 70, 90)).shape == (2, 5, 70, 90)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilated_backbone_keeps_resolution(output_stride):
    model = build_segmentation_model(build_backbone("resnet18"), 3,
                                     FinetuneConfig(head="fcn", output_stride=output_stride, **TINY))
    c5 = model.backbone(torch.randn(1, 3, 64, 64))
    assert c5.shape[-1] == 64 // output_stride
    assert model.backbone.strides["c5"] == output_stride


def test_heads_convert_to_sync_batchnorm():
    model = build_segmentation_model(build_backbone("resnet18"), 3, FinetuneConfig(head="fpn", **TINY))
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())


def test_sliding_inference_equals_whole_when_the_window_covers_the_image():
    model = build_segmentation_model(build_backbone("resnet18"), 4, FinetuneConfig(head="fpn", **TINY)).eval()
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(slide_inference(model, images, (64, 96), (32, 32)), model(images), atol=1e-5)


def test_sliding_inference_equals_whole_for_a_pixelwise_model(pixelwise_model):
    model = pixelwise_model(3).eval()
    images = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.allclose(slide_inference(model, images, (32, 32), (20, 24)), model(images), atol=1e-6)


def test_finetune_overfits_a_few_images(block_scenes, tmp_path):
    data = block_scenes(4, size=64, num_classes=3, block=16)
    cfg = FinetuneConfig(head="fpn", steps=30, batch_size=4, optimizer="adamw", lr=3e-3, weight_decay=0.0,
                         log_every=5, dropout=0.0, **TINY)
    cfg.augmentation = JointAugmentConfig(crop_size=[64, 64], scale_range=[1.0, 1.0], flip_prob=0.5)
    checkpoint = tmp_path / "model.safetensors"
    result = finetune_segmentation(build_backbone("resnet18"), data, data, cfg, checkpoint=checkpoint)
    losses = [loss for _, loss in result["train_loss"]]
    assert losses[-1] < 0.5 * losses[0]
    assert result["miou"] > 0.8  # evaluated on the training images
    model, meta = load_segmentation_model(checkpoint)
    assert meta["head"] == "fpn" and meta["class_names"] == ["c0", "c1", "c2"]
    again = evaluate_segmentation(model, data, cfg, torch.device("cpu"))
    assert again["miou"] == pytest.approx(result["miou"])
