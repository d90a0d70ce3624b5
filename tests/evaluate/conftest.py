"""Toy datasets and fake backbones for the evaluation tests (tiny, deterministic, no files)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.data.augment import IMAGENET_MEAN, IMAGENET_STD
from pixelssl.models.backbones import Backbone

BLOCK = 64  # label tiles span 2x2 C5 cells (bilinear logits cannot recover isolated 1-cell corners)
LEVEL = 60  # red value step per class in BlockScenes images


class BlockScenes:
    """Square images made of block x block tiles, each of a random class whose index sets the red channel."""

    def __init__(self, num_images: int, size: int = 128, num_classes: int = 4, seed: int = 0,
                 void_fraction: float = 0.0, block: int = BLOCK):
        generator = torch.Generator().manual_seed(seed)
        cells = size // block
        grid = torch.randint(num_classes, (num_images, cells, cells), generator=generator)
        self.labels = grid.repeat_interleave(block, 1).repeat_interleave(block, 2)
        red = (self.labels * LEVEL + 20).to(torch.uint8)
        noise = torch.randint(0, 256, (num_images, 2, size, size), generator=generator, dtype=torch.uint8)
        self.images = torch.cat([red.unsqueeze(1), noise], dim=1)
        if void_fraction:
            void = torch.rand(self.labels.shape, generator=generator) < void_fraction
            self.labels = self.labels.masked_fill(void, 255)
        self.num_classes = num_classes
        self.ignore_index = 255
        self.class_names = [f"c{k}" for k in range(num_classes)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def name(self, index: int) -> str:
        return f"block_{index:03d}"


class OneHotBackbone(Backbone):
    """Features that trivially encode the class: a one-hot map of the tile class at stride 32 (c5) and 16 (c4)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.channels = {"c4": num_classes, "c5": num_classes}
        self.strides = {"c4": 16, "c5": 32}

    def forward_levels(self, x: Tensor, levels: tuple[str, ...] = ("c5",)) -> dict[str, Tensor]:
        red = x[:, 0:1] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to [0, 1]
        out = {}
        for level in levels:
            pooled = F.avg_pool2d(red, self.strides[level]) * 255
            cls = ((pooled - 20) / LEVEL).round().clamp(0, self.num_classes - 1).long()[:, 0]
            out[level] = F.one_hot(cls, self.num_classes).permute(0, 3, 1, 2).float()
        return out


class NoiseBackbone(Backbone):
    """Features unrelated to the image: seeded Gaussian noise at stride 32."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.channels = {"c5": channels}
        self.strides = {"c5": 32}
        self.generator = torch.Generator().manual_seed(123)

    def forward_levels(self, x: Tensor, levels: tuple[str, ...] = ("c5",)) -> dict[str, Tensor]:
        b, _, h, w = x.shape
        return {"c5": torch.randn(b, self.channels["c5"], h // 32, w // 32, generator=self.generator)}


class PixelwiseModel(nn.Module):
    """A segmentation 'model' whose output at a pixel depends only on that pixel (sliding == whole inference)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Evaluation tests run single-threaded."""


@pytest.fixture
def block_scenes():
    return BlockScenes


@pytest.fixture
def onehot_backbone():
    return OneHotBackbone


@pytest.fixture
def noise_backbone():
    return NoiseBackbone


@pytest.fixture
def pixelwise_model():
    return PixelwiseModel
