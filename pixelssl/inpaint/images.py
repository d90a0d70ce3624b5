"""Images for inpainting: the value ranges the networks work in ([-1, 1], as the release), training crops of
any image folder (``RandomCrops``, each from its own seed, so data order and crops repeat on resume), and the fixed
held-out set the hole L1 is measured on."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from pixelssl.data.loader import sample_seed


def to_signed(image: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the release's ``x / 127.5 - 1``)."""
    return image.float() / 127.5 - 1


def to_unit(image: Tensor) -> Tensor:
    """float [-1, 1] -> [0, 1]."""
    return ((image + 1) / 2).clamp(0, 1)


def fit_short_side(image: Tensor, size: int) -> Tensor:
    """Upscale (antialiased bilinear) so the shorter side is at least ``size``; larger images are left alone."""
    height, width = image.shape[-2:]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    return TF.resize(image, [max(size, round(height * scale)), max(size, round(width * scale))], antialias=True)


class RandomCrops(Dataset):
    """Item (epoch, index) -> a random ``size`` x ``size`` crop of image ``index``, from that item's own seed."""

    def __init__(self, source: Any, size: int, seed: int) -> None:
        self.source, self.size, self.seed = source, size, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        from pixelssl.data.datasets import load_with_fallback

        epoch, index = item
        image, skipped = load_with_fallback(self.source, index)
        image = fit_short_side(image, self.size)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, 0))
        top = int(torch.randint(image.shape[1] - self.size + 1, (), generator=generator))
        left = int(torch.randint(image.shape[2] - self.size + 1, (), generator=generator))
        return {"image": image[:, top:top + self.size, left:left + self.size].contiguous(), "skipped": skipped}


def collate_crops(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([s["image"] for s in samples]), "skipped": [p for s in samples for p in s["skipped"]]}


def held_out_images(cfg: Any) -> Tensor | None:
    """The fixed held-out images of an ``InpaintConfig`` (uint8, centre crops of ``data.image_size``), or None when
    there are none."""
    d = cfg.data
    if d.val_root:
        from pixelssl.data.datasets import ImageFolder

        source = ImageFolder(d.val_root)
    elif not d.root:
        from pixelssl.data.synthetic import SyntheticScenes

        syn = d.synthetic
        source = SyntheticScenes(d.val_images, size=syn.size, num_classes=syn.num_classes, seed=syn.seed, split="val")
    else:
        return None
    images = [TF.center_crop(fit_short_side(source.load(i), d.image_size), [d.image_size] * 2)
              for i in range(min(d.val_images, len(source)))]
    return torch.stack(images)
