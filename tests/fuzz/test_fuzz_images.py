"""Fuzzed pre-training images: files of any PIL mode, size, format and suffix, intact or damaged.

A case passes when the image folder loader (``ImageFolder.load`` / ``load_encoded``, as ``data.root`` reads them)
returns uint8 (3, H, W) RGB of the file's displayed size (an intact file of the modes issue #20 names must decode),
or raises ``UnreadableImage`` in one line naming the file; and when the two-view dataset pre-training builds on the
folder serves full samples, the unreadable file skipped and reported in ``skipped`` (the count the run logs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from fuzz_support import COMMON_MODES, fuzz, image_files, outcome, write
from hypothesis import given
from hypothesis import strategies as st

from pixelssl.config import PretrainConfig, load_config
from pixelssl.data.datasets import ImageFolder
from pixelssl.data.loader import build_two_view_dataset
from pixelssl.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # PIL's notes on damaged TIFF / EXIF blocks

CAP = 1 << 20  # pixel cap for the cases (a flipped header byte can claim any size; the cap refuses it unread)


def _check_rgb(image: torch.Tensor) -> None:
    assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3 and image.shape[1] * image.shape[2]


@fuzz("images", "read")
@given(case=image_files(), encoded=st.booleans())
def test_any_image_file_decodes_to_rgb_or_is_named_unreadable(case, encoded):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), f"sub dir/ïmage{case.suffix}", case.data)
        built = outcome(lambda: ImageFolder(tmp, max_pixels=CAP), tmp, errors=(DataError,), label="folder")
        if not built.ok:
            assert not case.data, "only an empty file leaves the folder without images"
            return
        folder = built.value
        read = folder.load_encoded if encoded else folder.load
        result = outcome(lambda: read(0), path, errors=(DataError,), label=f"{case.fmt} {case.damage}")
    if case.intact and case.mode in COMMON_MODES and case.width * case.height <= CAP:
        assert result.ok, f"an intact {case.mode} {case.fmt} file was refused: {result.error}"
    if not result.ok:
        return
    image = result.value
    if not isinstance(image, torch.Tensor):  # a plain JPEG stays encoded (data.device_decode): header size only
        assert case.fmt == "JPEG" and image.data.dtype == torch.uint8 and image.data.numel() == len(case.data)
        size = (image.height, image.width)
    else:
        _check_rgb(image)
        size = tuple(image.shape[1:])
    if case.intact:
        assert size == (case.height, case.width), (size, case)


@fuzz("images", "views")
@given(cases=st.lists(image_files(max_side=24), min_size=1, max_size=3), seed=st.integers(0, 3),
       index=st.integers(0, 2), require_overlap=st.booleans())
def test_two_view_dataset_serves_full_samples_or_counts_the_skipped_files(cases, seed, index, require_overlap):
    with tempfile.TemporaryDirectory() as tmp:
        for k, case in enumerate(cases):
            write(Path(tmp), f"img_{k}{case.suffix}", case.data)
        cfg = load_config(PretrainConfig, None, [f"data.root={tmp}", "data.image_size=32",
                                                 f"data.require_overlap={str(require_overlap).lower()}"])
        built = outcome(lambda: build_two_view_dataset(cfg.data, seed), tmp, errors=(DataError,), label="dataset")
        if not built.ok:
            assert not any(case.data for case in cases)
            return
        dataset = built.value
        result = outcome(lambda: dataset[(0, index % len(dataset))], tmp, errors=(DataError,), label="sample")
    if result.ok:
        sample = result.value
        for view in ("view1", "view2"):
            assert sample[view].shape == (3, 32, 32) and torch.isfinite(sample[view]).all()
        assert all(Path(p).parent == Path(tmp) for p in sample["skipped"])
        intact = sum(case.intact and case.mode in COMMON_MODES for case in cases)
        assert len(sample["skipped"]) <= len(cases) - intact
    else:
        # every file failed: the loader says so in one line naming the first one
        assert "consecutive images failed to load" in str(result.error)
