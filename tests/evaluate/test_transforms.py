"""evaluate.transforms: image preparation, nearest label resize, and the joint augmentation of image and label."""

from __future__ import annotations

import pytest
import torch

from pixelssl.config import ConfigError
from pixelssl.data.augment import IMAGENET_MEAN, IMAGENET_STD
from pixelssl.evaluate.transforms import (
    JointAugmentConfig,
    prepare_image,
    random_scale_crop_flip,
    resize_label,
    scaled_size,
    validate_augment,
)


def test_the_shorter_side_is_resized_and_the_aspect_ratio_kept():
    assert scaled_size(360, 480, 240) == (240, 320)
    assert scaled_size(480, 360, 240) == (320, 240)
    assert scaled_size(361, 481, 0) == (361, 481)  # 0: unchanged
    image = torch.full((3, 30, 40), 255, dtype=torch.uint8)
    out = prepare_image(image, 15)
    assert out.dtype == torch.float32 and out.shape == (3, 15, 20)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)  # white, ImageNet-normalised
    torch.testing.assert_close(out[:, 7, 9], expected)


def test_labels_resize_by_nearest_and_keep_their_values():
    label = torch.tensor([[0, 1], [2, 255]])
    big = resize_label(label, (4, 6))
    assert big.dtype == label.dtype and set(big.unique().tolist()) == {0, 1, 2, 255}
    assert big[:2, :3].eq(0).all() and big[2:, 3:].eq(255).all()
    assert resize_label(label, (2, 2)) is label  # same size: untouched


def test_joint_augmentation_moves_image_and_label_together():
    rows, cols = torch.meshgrid(torch.arange(40) // 10, torch.arange(60) // 10, indexing="ij")
    label = rows * 6 + cols  # 10 x 10 tiles with distinct values
    image = label.float().expand(3, 40, 60).clone()  # every channel equals the label
    cfg = JointAugmentConfig(crop_size=[48, 48], scale_range=[0.8, 1.6], flip_prob=0.5)
    for seed in range(6):
        out_image, out_label = random_scale_crop_flip(image, label, cfg, 255, torch.Generator().manual_seed(seed))
        assert out_image.shape == (3, 48, 48) and out_label.shape == (48, 48)
        valid = out_label != 255
        # bilinear image vs nearest label: equal wherever the image is locally constant (away from edges)
        close = (out_image[0] - out_label.float()).abs() < 1e-3
        assert close[valid].float().mean() > 0.4
        assert (out_image[:, ~valid] == 0).all()  # padding is 0 in the image where the label is void


def test_crop_and_scale_lists_are_checked_naming_the_key():
    validate_augment(JointAugmentConfig(), "augmentation")
    with pytest.raises(ConfigError, match=r"augmentation\.crop_size.*both >= 32"):
        validate_augment(JointAugmentConfig(crop_size=[16, 64]), "augmentation")
    with pytest.raises(ConfigError, match=r"augmentation\.scale_range.*0 < low <= high"):
        validate_augment(JointAugmentConfig(scale_range=[2.0, 1.0]), "augmentation")
