"""Frozen-backbone feature extraction shared by the segmentation and classification probes.

The backbone runs in eval mode without autograd (BatchNorms folded into the convolutions); consecutive images of
one shape are batched together, so a folder of mixed sizes still works (smaller batches where the shape changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pixelssl.config import ConfigError
from pixelssl.evaluate.transforms import prepare_image
from pixelssl.models.inference import fold_batchnorm


def same_shape_batches(items: Iterable[tuple[Tensor, Any]], batch_size: int) -> Iterator[tuple[Tensor, list[Any]]]:
    """Group consecutive (image, payload) pairs whose images share a shape into stacked batches."""
    images: list[Tensor] = []
    payloads: list[Any] = []
    for image, payload in items:
        if images and (image.shape != images[0].shape or len(images) == batch_size):
            yield torch.stack(images), payloads
            images, payloads = [], []
        images.append(image)
        payloads.append(payload)
    if images:
        yield torch.stack(images), payloads


def frozen_features(backbone: nn.Module, items: Iterable[tuple[Tensor, Any]], levels: Sequence[str],
                    batch_size: int, device: torch.device, image_size: int = 0,
                    ) -> Iterator[tuple[dict[str, Tensor], Any]]:
    """Per item: ({level: (C, h, w) features on CPU}, payload) from uint8 (3, H, W) images.

    Images are normalised (and resized to shorter side ``image_size``, 0 = native) batch-wise on ``device``.
    The backbone runs with its BatchNorms folded into the convolutions (same features to float rounding).
    """
    levels = tuple(levels)
    frozen = fold_batchnorm(backbone)
    for batch, payloads in same_shape_batches(items, batch_size):
        with torch.no_grad():  # not held across ``yield``: grad mode would leak to the caller
            batch = prepare_image(batch.to(device), image_size)
            out = frozen.forward_levels(batch.contiguous(memory_format=torch.channels_last), levels)
            cpu = {level: out[level].float().cpu() for level in levels}
        for k, payload in enumerate(payloads):
            yield {level: cpu[level][k] for level in levels}, payload


def check_levels(backbone: nn.Module, levels: Sequence[str]) -> None:
    """Raise a ConfigError when the backbone has no such feature level."""
    available = list(getattr(backbone, "channels", {}))
    unknown = [level for level in levels if level not in available]
    if unknown or not levels:
        raise ConfigError(f"config key 'levels': {list(levels)} must be a non-empty subset of {available}")
