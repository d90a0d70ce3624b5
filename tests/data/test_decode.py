"""data.decode: any image file becomes 8-bit RGB as displayed (fast JPEG path included), or an UnreadableImage naming it."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.data.decode import UnreadableImage, read_rgb
from pixelssl.errors import DataError


def _save_rgb(path: Path, w: int = 12, h: int = 8, fmt: str | None = None) -> Path:
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb as PIL sees it on open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("mode", ["L", "1", "RGBA", "LA", "P", "CMYK"])
def test_any_mode_becomes_rgb_uint8(tmp_path, mode):
    image = Image.new("RGB", (10, 6), (200, 40, 90)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    out = read_rgb(path)
    assert out.dtype == torch.uint8 and out.shape == (3, 6, 10)


def test_cmyk_jpeg_keeps_its_colour(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), (200, 40, 90)).convert("CMYK").save(path, quality=95)
    assert (read_rgb(path)[:, 8, 8].int() - torch.tensor([200, 40, 90])).abs().max() <= 6


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16)).save(path)
    out = read_rgb(path)
    assert out.shape == (3, 1, 3)
    assert out[0, 0].tolist() == [0, 128, 255] and torch.equal(out[0], out[2])


def test_transparent_pixels_become_mid_grey(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, 2:, 3] = 255  # right half opaque red, left half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out[:, 0, 0].tolist() == [128, 128, 128]
    assert out[:, 0, 3].tolist() == [255, 0, 0]


def test_palette_with_transparency_is_composited(tmp_path):
    image = Image.new("P", (4, 2), 0)
    image.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    image.putpixel((3, 1), 1)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.png", transparency=0)
    out = read_rgb(tmp_path / "p.png")
    assert out[:, 0, 0].tolist() == [128, 128, 128]
    assert out[:, 1, 3].tolist() == [250, 0, 0]


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.new("RGB", (40, 20), (255, 255, 255)).save(tmp_path / "r.jpg", exif=exif)
    assert read_rgb(tmp_path / "r.jpg").shape == (3, 40, 20)


@pytest.mark.parametrize(
    "content",
    [b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "truncated"],
    ids=["text", "bad-png", "truncated-jpeg"],
)
def test_undecodable_file_raises_unreadable_image_naming_it(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        _save_rgb(tmp_path / "good.jpg", 64, 64, fmt="JPEG")
        content = (tmp_path / "good.jpg").read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(UnreadableImage) as info:
        read_rgb(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_decompression_bomb_is_unreadable_not_a_crash(tmp_path):
    with pytest.raises(UnreadableImage, match="pixels"):
        read_rgb(_png_header_only(tmp_path / "bomb.png", 20000, 20000))


def test_unreadable_image_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(UnreadableImage("/x/y.jpg", "broken")))
    assert isinstance(err, DataError) and err.path == "/x/y.jpg" and "y.jpg" in str(err)


def test_jpeg_fast_path_gives_the_same_pixels_as_pil(tmp_path, monkeypatch):
    """RGB, greyscale and EXIF-rotated JPEGs decode through torchvision.io.decode_jpeg to PIL's exact pixels;
    CMYK JPEGs and truncated files take PIL's path (converted / refused as before)."""
    from pixelssl.data import decode

    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 270 on display
    cases = {"rgb.jpg": (rgb, {}), "grey.jpg": (rgb.convert("L"), {}), "rotated.jpg": (rgb, {"exif": exif.tobytes()}),
             "cmyk.jpg": (rgb.convert("CMYK"), {})}
    for name, (image, extra) in cases.items():
        image.save(tmp_path / name, format="JPEG", quality=85, **extra)
    used = []
    original = decode._decode_jpeg
    monkeypatch.setattr(decode, "_decode_jpeg", lambda p, im: used.append(os.path.basename(p)) or original(p, im))
    fast = {name: read_rgb(tmp_path / name) for name in cases}
    monkeypatch.setattr(decode, "_decode_jpeg", lambda p, im: None)
    slow = {name: read_rgb(tmp_path / name) for name in cases}
    for name in cases:
        assert torch.equal(fast[name], slow[name]), name
    assert tuple(fast["rotated.jpg"].shape[1:]) == (44, 30)
    assert sorted(used) == sorted(cases)  # every file was offered to the fast path; CMYK declined it
    monkeypatch.setattr(decode, "_decode_jpeg", original)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    with pytest.raises(UnreadableImage, match="cut.jpg"):
        read_rgb(tmp_path / "cut.jpg")
