"""JPEG files handed to the training device still encoded (``data.device_decode``).

A loader worker then only reads the file's bytes and its header (size, EXIF orientation): enough to draw the
crops, which depend on the image size alone. Decoding (nvJPEG on CUDA), orientation, cropping and resizing happen
on the device in ``pixelssl.data.device_decode``. Anything that is not a plain RGB / greyscale JPEG keeps the CPU
path, so a folder may mix formats.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image
from torch import Tensor

from pixelssl.data.datasets import MAX_PIXELS, check_pixels, is_plain_jpeg, read_bytes, read_rgb, unreadable_as

EXIF_ORIENTATION = 0x0112
TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height on display


@dataclass(frozen=True)
class EncodedImage:
    """A JPEG file's bytes and what the header says about the displayed image."""

    data: Tensor  # (n,) uint8, the whole file
    height: int  # displayed size, i.e. after the EXIF orientation
    width: int
    orientation: int  # EXIF orientation 1..8 (1 = as stored)


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8; 1 when absent, unreadable or out of range (as PIL's ``exif_transpose`` treats it)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block leaves the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_encoded(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> EncodedImage | Tensor:
    """A plain JPEG as ``EncodedImage`` (header parsed, nothing decoded); any other image decoded as ``read_rgb``
    does. ``UnreadableImage`` when the header is unreadable or over the pixel cap."""
    with unreadable_as(path):
        data = read_bytes(path)  # one read: the header is parsed from these bytes, which then travel as they are
        with Image.open(io.BytesIO(data.numpy())) as image:
            check_pixels(path, image, max_pixels)
            plain = is_plain_jpeg(image)
            width, height = image.size
            orientation = _orientation(image) if plain else 1
    if not plain:
        return read_rgb(path, max_pixels)
    if orientation in TRANSPOSED:
        width, height = height, width
    return EncodedImage(data, height, width, orientation)
