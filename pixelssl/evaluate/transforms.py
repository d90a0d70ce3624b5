"""Image preparation for evaluation and joint image/label augmentation (the label always follows with nearest).

Images arrive as uint8 (3, H, W) and leave ImageNet-normalised float32; labels are int64 (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from pixelssl.config import opt, require
from pixelssl.data.augment import normalize
from pixelssl.data.loader import sample_seed
from pixelssl.evaluate.common import check_label, item_name


@dataclass
class JointAugmentConfig:
    crop_size: list = opt([256, 256], "training crop [height, width] in pixels (void-padded when the image is smaller)")
    scale_range: list = opt([0.5, 2.0], "random rescale factor range [low, high] applied before cropping")
    flip_prob: float = opt(0.5, "probability of a horizontal flip", ge=0, le=1)


def scaled_size(height: int, width: int, shorter_side: int) -> tuple[int, int]:
    """(h, w) with the shorter side resized to ``shorter_side`` (0 = unchanged), aspect ratio kept."""
    if shorter_side <= 0:
        return height, width
    factor = shorter_side / min(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a float (..., 3, H, W) image (antialiased when shrinking); no-op at the same size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batched = image if image.dim() == 4 else image.unsqueeze(0)
    out = F.interpolate(batched, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if image.dim() == 4 else out[0]


def resize_label(label: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of an integer (H, W) label map."""
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    out = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")
    return out[0, 0].to(label.dtype)


def prepare_image(image: Tensor, image_size: int = 0) -> Tensor:
    """uint8 (..., 3, H, W) -> normalised float32 (..., 3, h, w), shorter side resized to ``image_size`` (0: keep)."""
    x = normalize(image)
    return resize_image(x, scaled_size(x.shape[-2], x.shape[-1], image_size))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_scale_crop_flip(image: Tensor, label: Tensor, config: JointAugmentConfig, ignore_index: int,
                           generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random rescale -> pad (image 0 = mean colour, label void) -> random crop -> flip, applied jointly.

    ``image`` is normalised float (3, H, W); returns a (3, ch, cw) image and a (ch, cw) label.
    """
    crop_h, crop_w = (int(v) for v in config.crop_size)
    scale = _uniform(generator, float(config.scale_range[0]), float(config.scale_range[1]))
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    image, label = resize_image(image, size), resize_label(label, size)
    pad_h, pad_w = max(crop_h - size[0], 0), max(crop_w - size[1], 0)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        label = F.pad(label, (0, pad_w, 0, pad_h), value=ignore_index)
    top = int(torch.randint(image.shape[-2] - crop_h + 1, (), generator=generator))
    left = int(torch.randint(image.shape[-1] - crop_w + 1, (), generator=generator))
    image = image[:, top:top + crop_h, left:left + crop_w]
    label = label[top:top + crop_h, left:left + crop_w]
    if float(torch.rand((), generator=generator)) < config.flip_prob:
        image, label = image.flip(-1), label.flip(-1)
    return image.contiguous(), label.contiguous()


class JointAugmentDataset(Dataset):
    """Item ``(epoch, index)`` -> (augmented normalised image crop, label crop), reproducible per (seed, epoch, index).

    Images (and labels, nearest) are first resized so the shorter side is ``image_size`` (0 = native).
    """

    def __init__(self, dataset: Any, config: JointAugmentConfig, image_size: int, seed: int) -> None:
        self.dataset = dataset
        self.config = config
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, Tensor]:
        epoch, index = item
        image, label = self.dataset[index]
        check_label(label, self.dataset.num_classes, self.dataset.ignore_index, item_name(self.dataset, index))
        image = prepare_image(image, self.image_size)
        label = resize_label(label.long(), tuple(image.shape[-2:]))
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, 3))
        return random_scale_crop_flip(image, label, self.config, self.dataset.ignore_index, generator)


def validate_augment(config: JointAugmentConfig, prefix: str) -> None:
    """The checks of a JointAugmentConfig section that a declared bound cannot express (lists of two values),
    naming keys under ``prefix``."""
    crop, scale = list(config.crop_size), list(config.scale_range)
    require(len(crop) == 2 and min(crop) >= 32, f"{prefix}.crop_size",
            f"must be [height, width] with both >= 32 (got {crop})")
    require(len(scale) == 2 and 0 < scale[0] <= scale[1], f"{prefix}.scale_range",
            f"must be [low, high] with 0 < low <= high (got {scale})")
