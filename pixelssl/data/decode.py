"""Image decoding, in one place: every image pixelssl reads goes through ``read_rgb`` or ``read_encoded``.

``read_rgb``: EXIF orientation applied, any PIL mode converted to 8-bit RGB (transparent areas composited over
mid-grey, 16-bit greyscale scaled down, not clipped), and a pixel cap against decompression bombs checked from
the header before decoding; plain JPEGs go through libjpeg-turbo (``torchvision.io.decode_jpeg``), the rest
through PIL. Whatever a decoder raises on a bad file becomes one ``UnreadableImage`` line naming the file.

``read_encoded``: JPEG files handed to the training device still encoded (``data.device_decode``). A loader
worker then only reads the file's bytes and its header (size, EXIF orientation): enough to draw the crops, which
depend on the image size alone. Decoding (nvJPEG on CUDA), orientation, cropping and resizing happen on the
device in ``pixelssl.data.device_decode``. Anything that is not a plain RGB / greyscale JPEG keeps the CPU path,
so a folder may mix formats.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch
import torchvision
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from pixelssl.errors import DataError

MAX_PIXELS = 178_956_970  # PIL's hard decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS), set explicitly here
TRANSPARENT_FILL = (128, 128, 128)  # transparent pixels become mid-grey, close to the ImageNet mean


class UnreadableImage(DataError):
    """An image file that cannot be decoded (corrupt, truncated, not an image, too large)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        reason = " ".join(reason.split())  # one line, whatever the decoder said
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # keep (path, reason) through pickling, e.g. out of a data-loader worker
        return (type(self), (self.path, self.reason))


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB version of a PIL image of any mode."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: scale 0..65535 to 0..255 (PIL's own convert would clip everything above 255).
        values = np.asarray(image).astype(np.float32)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode == "F":  # NaN (undefined as uint8) becomes 0, +-inf the ends of the range
        values = np.nan_to_num(np.asarray(image), nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in ("PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, TRANSPARENT_FILL)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


@contextmanager
def unreadable_as(path: str | os.PathLike | BinaryIO) -> Iterator[None]:
    """Turn whatever PIL or a decoder raises on a bad file into ``UnreadableImage`` naming ``path``, one line."""
    try:
        with warnings.catch_warnings():
            # Our own cap (checked by the callers) is the limit; PIL's softer warning threshold would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as err:
        raise UnreadableImage(path, f"too many pixels ({err})") from err
    except FileNotFoundError as err:
        raise UnreadableImage(path, "file not found") from err
    except UnidentifiedImageError as err:
        raise UnreadableImage(path, "not a recognised image format") from err
    except Exception as err:  # PIL raises many types on corrupt data (OSError, SyntaxError, ValueError, struct.error)
        raise UnreadableImage(path, f"{type(err).__name__}: {err}") from err


def check_pixels(path: str | os.PathLike | BinaryIO, image: Image.Image, max_pixels: int) -> None:
    """Refuse images above the pixel cap from their header, before anything is decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise UnreadableImage(path, f"{width}x{height} pixels exceeds the limit of {max_pixels}")


def read_rgb(path: str | os.PathLike | BinaryIO, max_pixels: int = MAX_PIXELS) -> Tensor:
    """Decode an image file as uint8 (3, H, W) RGB, EXIF orientation applied; ``UnreadableImage`` on failure."""
    with unreadable_as(path), Image.open(path) as image:
        check_pixels(path, image, max_pixels)
        fast = _decode_jpeg(path, image)
        if fast is not None:
            return fast
        image.load()
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block does not make the pixels unreadable; keep them as stored
            pass
        array = np.array(_to_rgb(image), dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise UnreadableImage(path, f"decoded to an unexpected array shape {array.shape}")
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def is_plain_jpeg(image: Image.Image) -> bool:
    """RGB or greyscale JPEG: what libjpeg-turbo and nvJPEG decode to RGB (CMYK / YCCK go through PIL)."""
    return image.format == "JPEG" and image.mode in ("RGB", "L")


def decode_jpeg_rgb(data: Tensor | list[Tensor], device: torch.device | str = "cpu",
                    apply_exif_orientation: bool = False) -> Tensor | list[Tensor]:
    """``torchvision.io.decode_jpeg`` to RGB of one byte tensor or a list (a list is one batched nvJPEG call on CUDA)."""
    with warnings.catch_warnings():  # torchvision 0.29 marks its decoders deprecated in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device=device,
                                          apply_exif_orientation=apply_exif_orientation)


def _decode_jpeg(path: str | os.PathLike | BinaryIO, image: Image.Image) -> Tensor | None:
    """RGB/greyscale JPEG files through ``torchvision.io.decode_jpeg`` (libjpeg-turbo straight into a tensor, about
    twice as fast as PIL + numpy here, same pixels); None for anything else or on any error, so PIL decides."""
    if not is_plain_jpeg(image) or not isinstance(path, (str, os.PathLike)):
        return None
    try:
        decoded = decode_jpeg_rgb(read_bytes(path), apply_exif_orientation=True)
    except Exception:  # truncated, odd EXIF, unsupported variant: PIL's path below reports or copes
        return None
    return decoded if decoded.ndim == 3 and decoded.shape[0] == 3 else None


def read_bytes(path: str | os.PathLike) -> Tensor:
    """A file's bytes as a 1-D uint8 tensor (what the JPEG decoders take), in ordinary memory: a loader worker can
    send it (``torchvision.io.read_file``'s file-backed tensors fail to pickle there, and the loader then hangs)."""
    with open(path, "rb") as file:
        return torch.frombuffer(bytearray(file.read()), dtype=torch.uint8)


# --------------------------------------------------------------------------- still encoded
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
