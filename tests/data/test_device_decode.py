"""Decoding JPEGs on the training device (``data.device_decode``): workers ship bytes + header facts + crops, the
device path gives the CPU path's exact views (on the CPU), and files that fail there are replaced and reported."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.data.datasets import ImageFolder
from pixelssl.data.decode import MAX_PIXELS, EncodedImage, UnreadableImage, decode_jpeg_rgb, read_encoded, read_rgb
from pixelssl.data.device_augment import build_param_samplers
from pixelssl.data.device_batch import DeviceBatches
from pixelssl.data.device_decode import PendingDecode, decode_batch, orient
from pixelssl.data.loader import TwoViewDataset, build_pretrain_loader, collate_pairs
from pixelssl.data.views import TwoViewSampler


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small images: one thread."""


def _photo(seed: int, h: int, w: int) -> Image.Image:
    """A smooth random colour image (JPEG-friendly, so decoders agree on it)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((w, h), Image.BILINEAR)


def _save_jpeg(path: Path, image: Image.Image, orientation: int = 1) -> Path:
    extra = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    image.save(path, format="JPEG", quality=90, **extra)
    return path


def _mixed_folder(root: Path) -> Path:
    """Plain JPEGs of several sizes and every EXIF orientation, a greyscale JPEG, a CMYK JPEG and a PNG."""
    root.mkdir()
    for orientation in range(1, 9):
        _save_jpeg(root / f"o{orientation}.jpg", _photo(orientation, 60 + 4 * orientation, 90), orientation)
    _save_jpeg(root / "grey.jpg", _photo(20, 70, 50).convert("L"))
    _photo(21, 64, 80).convert("CMYK").save(root / "cmyk.jpg", format="JPEG")
    _photo(22, 72, 72).save(root / "flat.png")
    return root


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_gives_the_displayed_image(tmp_path, orientation):
    """Decoding as stored, then ``orient``, equals the decoders' own EXIF handling (torchvision's and PIL's)."""
    path = _save_jpeg(tmp_path / "x.jpg", _photo(orientation, 24, 40), orientation)
    data = path.read_bytes()
    stored = decode_jpeg_rgb(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    displayed = orient(stored, orientation)
    assert torch.equal(displayed, read_rgb(path))  # torchvision's apply_exif_orientation
    with Image.open(path) as image:
        pil = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert torch.equal(displayed, decode_jpeg_rgb(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                                  apply_exif_orientation=True))
    assert displayed.shape[1:] == pil.shape[:2]
    encoded = read_encoded(path)
    assert isinstance(encoded, EncodedImage) and encoded.orientation == orientation
    assert (encoded.height, encoded.width) == tuple(displayed.shape[1:])
    assert encoded.data.numpy().tobytes() == data


def test_read_encoded_keeps_only_plain_jpegs_encoded(tmp_path):
    root = _mixed_folder(tmp_path / "images")
    assert isinstance(read_encoded(root / "grey.jpg"), EncodedImage)
    for name in ("cmyk.jpg", "flat.png"):  # decoded in the worker, exactly as read_rgb
        got = read_encoded(root / name)
        assert isinstance(got, torch.Tensor) and torch.equal(got, read_rgb(root / name))
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    with pytest.raises(UnreadableImage, match="junk.jpg"):
        read_encoded(tmp_path / "junk.jpg")
    with pytest.raises(UnreadableImage, match="exceeds the limit"):
        read_encoded(root / "o1.jpg", max_pixels=100)
    assert MAX_PIXELS > 100


def _dataset(root: Path, device_decode: bool, size: int = 32, overlap: bool = False) -> TwoViewDataset:
    views = TwoViewSampler(size, scale=(0.2, 1.0), require_overlap=overlap)
    return TwoViewDataset(ImageFolder(root), views, (None, None), seed=5,  # type: ignore[arg-type]
                          param_samplers=build_param_samplers("byol"), device_decode=device_decode)


@pytest.mark.parametrize("overlap", [False, True])
def test_device_path_gives_the_cpu_paths_batch(tmp_path, overlap):
    """Same seed, same crops, same pixels: the batch decoded 'on the device' (here the CPU) equals the batch the
    loader decodes itself, after the photometric step too, for every orientation and a mixed folder."""
    root = _mixed_folder(tmp_path / "images")
    cpu_set, device_set = _dataset(root, False, overlap=overlap), _dataset(root, True, overlap=overlap)
    items = [(epoch, i) for epoch in (0, 3) for i in range(len(cpu_set))]
    cpu_batch = collate_pairs([cpu_set[item] for item in items])
    device_batch = collate_pairs([device_set[item] for item in items])
    encoded = [data.numel() > 0 for data in device_batch["encoded"]]
    names = [path.name for path in ImageFolder(root).paths]
    assert sum(encoded) == 2 * 9 and [names[i] for i, e in enumerate(encoded[:11]) if not e] == ["cmyk.jpg", "flat.png"]
    cfg = load_config(PretrainConfig, overrides=["data.image_size=32", "data.device_augment=true",
                                                 "data.device_decode=true"]).data
    prepare = DeviceBatches(cfg, torch.device("cpu"), torch.channels_last)
    got, unreadable = prepare(device_batch)
    want, _ = prepare(cpu_batch)
    assert unreadable == []
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_loader_workers_ship_encoded_batches(tmp_path):
    root = _mixed_folder(tmp_path / "images")
    dataset = _dataset(root, True)
    batches = list(build_pretrain_loader(dataset, batch_size=4, seed=1, start_step=0, total_steps=2, num_workers=1))
    assert len(batches) == 2
    for batch in batches:
        assert len(batch["encoded"]) == 4 and len(batch["name"]) == 4 and batch["decode"].shape == (4, 13)
        assert all(name.endswith((".jpg", ".png")) for name in batch["name"])


def _corrupt_body(path: Path) -> bytes:
    """A JPEG whose header is intact but whose entropy-coded data is cut off: the header parses, nothing decodes."""
    data = path.read_bytes()
    return data[: data.index(b"\xff\xda") + 20]  # the start-of-scan segment and a few bytes of scan data


def test_a_file_that_does_not_decode_is_replaced_and_reported(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(4):
        _save_jpeg(root / f"{i}.jpg", _photo(i, 48, 64))
    (root / "2.jpg").write_bytes(_corrupt_body(root / "2.jpg"))
    assert isinstance(read_encoded(root / "2.jpg"), EncodedImage)  # the worker cannot tell
    dataset = _dataset(root, True)
    batch = collate_pairs([dataset[(0, i)] for i in range(4)])
    pending = PendingDecode.take(batch)
    assert pending is not None and "encoded" not in batch
    photo = [batch.pop("photo1"), batch.pop("photo2")]
    batch.pop("skipped")
    failed = pending.fill(batch, photo, 32)
    assert failed == [str(root / "2.jpg")]
    for key in ("view1", "view2", "box1", "box2", "flip1", "flip2"):  # sample 2 took sample 0's content
        assert torch.equal(batch[key][2], batch[key][0]), key
    assert torch.equal(photo[0][2], photo[0][0]) and torch.equal(photo[1][2], photo[1][0])
    assert batch["view1"][1].float().std() > 0  # the others were decoded


def test_batched_decode_failure_falls_back_per_image(tmp_path):
    """One bad file in the list makes the batched call fail; the good ones are still decoded (one by one)."""
    good = _save_jpeg(tmp_path / "good.jpg", _photo(1, 20, 30), orientation=6)
    bad = _corrupt_body(_save_jpeg(tmp_path / "bad.jpg", _photo(2, 20, 30)))
    encoded = [torch.frombuffer(bytearray(good.read_bytes()), dtype=torch.uint8),
               torch.frombuffer(bytearray(bad), dtype=torch.uint8)]
    images = decode_batch(encoded, [6, 1], torch.device("cpu"))
    assert images[1] is None and torch.equal(images[0], read_rgb(good))


def test_a_size_that_disagrees_with_the_header_is_not_cropped_out_of_bounds(tmp_path):
    path = _save_jpeg(tmp_path / "a.jpg", _photo(1, 40, 40))
    dataset = _dataset(tmp_path, True)
    batch = collate_pairs([dataset[(0, 0)], dataset[(0, 0)]])
    batch["decode"][1, 0] = 80  # header said 80 rows: the decoded 40 cannot be it
    pending = PendingDecode.take(batch)
    batch.pop("skipped")
    photo = [batch.pop("photo1"), batch.pop("photo2")]
    assert pending.fill(batch, photo, 32) == [str(path)]
    assert torch.equal(batch["view1"][1], batch["view1"][0])


def test_device_decode_needs_device_augment():
    with pytest.raises(ConfigError, match="data.device_decode.*data.device_augment=true"):
        load_config(PretrainConfig, overrides=["data.device_decode=true"])


def test_pretraining_on_device_decoded_jpegs_matches_the_cpu_path(tmp_path, caplog):
    """End to end: the same run with JPEGs decoded 'on the device' (CPU here) gives bit-identical losses and
    weights, and a file that only fails at decode time is skipped with one warning and counted."""
    from pixelssl.engine.checkpoint import load_checkpoint
    from pixelssl.engine.logger import read_metrics
    from pixelssl.train.loop import pretrain

    root = tmp_path / "images"
    root.mkdir()
    for i in range(8):
        _save_jpeg(root / f"{i}.jpg", _photo(i, 56 + 2 * i, 72), orientation=1 + i % 8)
    common = ["model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16", "data.image_size=32",
              f"data.root={root}", "data.num_workers=1", "train.batch_size=4", "train.max_steps=3",
              "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
              "data.device_augment=true", f"run.output_dir={tmp_path}"]
    runs = {}
    for name, decode in (("cpu", "false"), ("device", "true")):
        cfg = load_config(PretrainConfig, overrides=[*common, f"run.name={name}", f"data.device_decode={decode}"])
        result = pretrain(cfg)
        runs[name] = ([r["loss"] for r in read_metrics(result.run_dir / "metrics.jsonl")],
                      load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["model"])
    assert runs["cpu"][0] == runs["device"][0] and len(runs["cpu"][0]) == 3
    for key, value in runs["cpu"][1].items():
        assert torch.equal(value, runs["device"][1][key]), key

    (root / "3.jpg").write_bytes(_corrupt_body(root / "3.jpg"))
    cfg = load_config(PretrainConfig, overrides=[*common, "run.name=bad", "data.device_decode=true"])
    with caplog.at_level(logging.WARNING):
        result = pretrain(cfg)
    assert result.skipped_files == 1
    assert sum("3.jpg" in r.getMessage() for r in caplog.records) == 1


def test_corrupt_body_is_really_undecodable(tmp_path):
    """Guard for the tests above: the cut file's header opens, but no decoder accepts it."""
    path = tmp_path / "cut.jpg"
    path.write_bytes(_corrupt_body(_save_jpeg(tmp_path / "whole.jpg", _photo(0, 48, 64))))
    with Image.open(path) as image:
        assert image.size == (64, 48)
    with pytest.raises(UnreadableImage):
        read_rgb(io.BytesIO(path.read_bytes()))
