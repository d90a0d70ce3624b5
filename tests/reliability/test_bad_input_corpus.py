"""A folder of hostile files pre-trains anyway: each file is converted and used, or skipped with a warning and
counted; nothing crashes mid-epoch and the counts are reported."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.cli import main
from pixelssl.config import PretrainConfig, load_config
from pixelssl.data.datasets import ImageFolder
from pixelssl.data.decode import UnreadableImage
from pixelssl.train.loop import pretrain

TINY = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=32",
        "data.num_workers=0", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
        "train.tensorboard=false", "train.progress=false", "train.amp=fp32", "train.threads=1"]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def build_corpus(folder) -> dict[str, str]:
    """Write the corpus; returns file name -> expected outcome ("used" or "skipped")."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    files: dict[str, tuple[bytes, str]] = {
        "good.jpg": (_jpeg(rgb), "used"),
        "zero_byte.jpg": (b"", "skipped"),
        "truncated.jpg": (_jpeg(rgb)[:200], "skipped"),
        "not_an_image.png": (b"this is a text file with an image extension\n" * 4, "skipped"),
        "sixteen_bit.png": (_png(Image.fromarray(rng.integers(0, 65535, (40, 40), dtype=np.uint16))), "used"),
        "grey.png": (_png(rgb.convert("L")), "used"),
        "cmyk.jpg": (_jpeg(rgb.convert("CMYK")), "used"),
        "palette_alpha.png": (_png(rgb.convert("P")), "used"),
        "one_pixel.png": (_png(Image.new("RGB", (1, 1), (200, 10, 10))), "used"),
        "long_strip.png": (_png(Image.new("RGB", (10000, 10), (10, 200, 10))), "used"),
        "ünïcode name with spaces.png": (_png(rgb), "used"),
    }
    # Palette with a transparent entry.
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    files["palette_alpha.png"] = (_png(palette), "used")
    # EXIF-rotated JPEG (orientation 6: rotate 90 degrees on display).
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", exif=exif.tobytes())
    files["exif_rotated.jpg"] = (buffer.getvalue(), "used")
    # A header that claims a huge image (decompression bomb): a 1x1 PNG with its IHDR size patched.
    bomb = bytearray(_png(Image.new("L", (1, 1))))
    bomb[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")
    files["bomb.png"] = (bytes(bomb), "skipped")
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: outcome for name, (_, outcome) in files.items()}


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "bad inputs ü"
    folder.mkdir()
    return folder, build_corpus(folder)


def test_each_file_has_its_defined_outcome(corpus):
    folder, expected = corpus
    source = ImageFolder(folder)
    listed = {p.name for p in source.paths}
    assert "zero_byte.jpg" not in listed  # excluded at scan time with a warning
    for index, path in enumerate(source.paths):
        if expected[path.name] == "used":
            image = source.load(index)
            assert image.dtype == torch.uint8 and image.shape[0] == 3 and image.shape[1] * image.shape[2] >= 1
        else:
            with pytest.raises(UnreadableImage) as exc:
                source.load(index)
            assert path.name in str(exc.value) and "\n" not in str(exc.value)
    exif_index = [p.name for p in source.paths].index("exif_rotated.jpg")
    assert tuple(source.load(exif_index).shape[1:]) == (64, 48)  # rotated: width and height swapped


def test_pretraining_on_the_corpus_completes_and_counts_skips(corpus, tmp_path, caplog):
    folder, expected = corpus
    cfg = load_config(PretrainConfig, "pixpro_r18_demo",
                      [*TINY, f"data.root={folder}", "train.max_steps=4", f"run.output_dir={tmp_path}", "run.name=bad"])
    with caplog.at_level(logging.WARNING):
        result = pretrain(cfg)
    unreadable = {name for name, outcome in expected.items() if outcome == "skipped"} - {"zero_byte.jpg"}
    assert result.skipped_files == len(unreadable)  # every unreadable file read in 4 x 4 samples, counted once
    for name in unreadable:
        assert name in caplog.text
    assert (result.run_dir / "backbone.safetensors").is_file()


def test_empty_and_missing_folders_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for root, words in ((tmp_path / "empty", "no images found"), (tmp_path / "missing", "does not exist")):
        rc = main(["pretrain", "--config", "pixpro_r18_demo", *TINY, f"data.root={root}",
                   f"run.output_dir={tmp_path}", "train.max_steps=1"])
        err = capsys.readouterr().err
        assert rc == 1 and words in err and str(root) in err
        assert "Traceback" not in err
