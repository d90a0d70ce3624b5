"""Decode, orient, crop and resize a batch's still-encoded JPEGs on the training device (``data.device_decode``).

The loader ships each plain JPEG as its file bytes plus one ``decode`` row (columns below): the displayed size
from the header, the EXIF orientation and both views' crops, drawn from the sample's seed exactly as the CPU path
draws them. Here the batch's JPEGs are decoded in one call (``torchvision.io.decode_jpeg`` on a list: one batched
nvJPEG decode on CUDA, libjpeg-turbo on the CPU), oriented, and each view is cut and resized with the CPU path's own
``render_view``. On the CPU the views are therefore identical to the loader's; on CUDA the resize runs in float and
rounds (torchvision's GPU path), and nvJPEG's IDCT may differ from libjpeg-turbo's by a grey level or so.

A JPEG that the device cannot decode is retried on the CPU (PIL); one that nothing decodes, or whose decoded size
disagrees with its header, is replaced by another sample of the same batch (views, boxes, flips and photometric
parameters copied) and reported like any unreadable file, so the batch keeps its size and the run keeps going.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pixelssl.data.decode import EncodedImage, UnreadableImage, decode_jpeg_rgb, read_rgb
from pixelssl.data.views import CropSpec, render_view
from pixelssl.errors import DataError

# Columns of a ``decode`` row.
HEIGHT, WIDTH, ORIENTATION = 0, 1, 2
CROPS = (slice(3, 8), slice(8, 13))  # (top, left, height, width, flipped) of view 1 and view 2
DECODE_COLUMNS = 13
PENDING_KEYS = ("encoded", "decode", "name")  # batch keys that stay on the host
COPIED_KEYS = ("view1", "view2", "box1", "box2", "flip1", "flip2")  # what a replaced sample takes from its donor


def decode_row(image: EncodedImage, crops: tuple[CropSpec, CropSpec]) -> Tensor:
    """The ``decode`` row the loader sends with an encoded image."""
    return torch.tensor([image.height, image.width, image.orientation, *crops[0].as_row(), *crops[1].as_row()],
                        dtype=torch.int64)


def orient(image: Tensor, orientation: int) -> Tensor:
    """A (C, H, W) image as displayed under EXIF ``orientation`` (1..8), the same pixels as PIL's ``exif_transpose``."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:  # transpose
        return image.transpose(-2, -1)
    if orientation == 6:  # rotate 90 degrees clockwise
        return image.transpose(-2, -1).flip(-1)
    if orientation == 7:  # transverse
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:  # rotate 90 degrees counter-clockwise
        return image.transpose(-2, -1).flip(-2)
    return image


def _decode_one(data: Tensor, orientation: int, device: torch.device) -> Tensor | None:
    """One JPEG the batched call refused: on the device alone, else through PIL on the CPU; None if unreadable."""
    try:
        return orient(decode_jpeg_rgb(data, device=device), orientation)
    except Exception:  # e.g. a JPEG variant nvJPEG does not support, or corrupt data
        pass
    try:
        return read_rgb(io.BytesIO(data.numpy().tobytes())).to(device)  # PIL applies the orientation itself
    except UnreadableImage:
        return None


def decode_batch(encoded: list[Tensor], orientations: list[int], device: torch.device) -> list[Tensor | None]:
    """Decoded, oriented (3, H, W) uint8 images on ``device``; None where a file cannot be decoded at all."""
    try:
        return [orient(image, o) for image, o in zip(decode_jpeg_rgb(encoded, device=device), orientations)]
    except Exception:  # the batched call fails as a whole; find the culprits one by one
        return [_decode_one(data, o, device) for data, o in zip(encoded, orientations)]


@dataclass
class PendingDecode:
    """The still-encoded part of one batch, taken off it before the batch moves to the device."""

    encoded: list[Tensor]
    decode: Tensor  # (B, DECODE_COLUMNS) int64 on the host; rows of CPU-decoded samples are unused
    names: list[str]

    @classmethod
    def take(cls, batch: dict[str, Any]) -> PendingDecode | None:
        """Pop the encoded images off a batch; None when the loader decoded everything itself."""
        if "encoded" not in batch:
            return None
        encoded, decode, names = (batch.pop(key) for key in PENDING_KEYS)
        return cls(encoded, decode, names) if any(data.numel() for data in encoded) else None

    def fill(self, batch: dict[str, Tensor], photo: list[Tensor | None], size: int) -> list[str]:
        """Write the decoded views into ``batch["view1"]`` / ``["view2"]`` (uint8, on their device) in place.

        Returns the files that could not be decoded (their samples now copy another sample of the batch).
        """
        device = batch["view1"].device
        rows = [i for i, data in enumerate(self.encoded) if data.numel()]
        meta = self.decode.tolist()
        images = decode_batch([self.encoded[i] for i in rows], [meta[i][ORIENTATION] for i in rows], device)
        decoded: dict[int, Tensor] = {}
        failed: list[int] = []
        for i, image in zip(rows, images):
            if image is not None and tuple(image.shape[-2:]) == (meta[i][HEIGHT], meta[i][WIDTH]):
                decoded[i] = image
            else:
                failed.append(i)
        if decoded:
            index = torch.tensor(list(decoded), device=device)
            for view, key in enumerate(("view1", "view2")):
                crops = [render_view(image, CropSpec(*meta[i][CROPS[view]]), size) for i, image in decoded.items()]
                batch[key].index_copy_(0, index, torch.stack(crops))
        if failed:
            self._replace(batch, photo, failed)
        return [self.names[i] for i in failed]

    def _replace(self, batch: dict[str, Tensor], photo: list[Tensor | None], failed: list[int]) -> None:
        """Give every failed sample the content of the first sample that has views (deterministic, so resumable)."""
        donor = next((i for i in range(len(self.encoded)) if i not in failed), None)
        if donor is None:
            raise DataError(f"no image of this batch could be decoded on {batch['view1'].device}, e.g. "
                            f"{self.names[failed[0]]}; is the dataset corrupt?")
        for i in failed:
            for key in COPIED_KEYS:
                batch[key][i] = batch[key][donor]
            for params in photo:
                if params is not None:
                    params[i] = params[donor]
