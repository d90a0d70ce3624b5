"""A loader batch made ready for the training step on its device: shipped, decoded, augmented, laid out.

One place for what the training loop and the throughput benchmark both do to every batch, in this order: take
the host-only parts off (skipped files, photometric parameters, still-encoded JPEGs), copy the rest to the device,
decode and crop the JPEGs there (``data.device_decode``), run the batched photometric step (``data.device_augment``)
and set the views' memory format (channels_last).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pixelssl.data.device_augment import BatchedPhotometric, build_device_augment
from pixelssl.data.device_decode import PendingDecode


class DeviceBatches:
    """Callable: loader batch -> (batch of device tensors, files found unreadable while preparing it)."""

    def __init__(self, data_cfg: Any, device: torch.device, memory_format: torch.memory_format) -> None:
        self.device = device
        self.memory_format = memory_format
        self.image_size = int(data_cfg.image_size)
        self.photometric: tuple[BatchedPhotometric, BatchedPhotometric] | None = (
            build_device_augment(data_cfg.augment) if data_cfg.device_augment else None)

    def __call__(self, batch: dict[str, Any]) -> tuple[dict[str, Tensor], list[str]]:
        skipped = list(batch.pop("skipped"))
        photo = [batch.pop("photo1", None), batch.pop("photo2", None)]  # parameters stay on the host
        pending = PendingDecode.take(batch)  # JPEG bytes stay on the host too: the decoder reads them from there
        batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        if pending is not None:
            skipped += pending.fill(batch, photo, self.image_size)
        for index, key in enumerate(("view1", "view2")):
            if self.photometric is not None:
                batch[key] = self.photometric[index](batch[key], photo[index])
            batch[key] = batch[key].contiguous(memory_format=self.memory_format)
        return batch, skipped
