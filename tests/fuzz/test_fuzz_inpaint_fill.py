"""Fuzzed inpainting inputs: ``pixelssl inpaint fill`` on image and mask files of any mode, size and state, and
``fill_folder`` on folders of them.

A case passes when the command answers 0 and wrote an image of the input's size whose known pixels are the input's
(and the flow picture when asked), or answers 1 with one ``error:`` line and wrote nothing; a folder fill writes one
PNG per filled image, names every skipped one with its reason, and counts them. No case leaves a temp file.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_support import (
    assert_no_temp_files,
    check_message,
    fuzz,
    image_files,
    mask_files,
    outcome,
    time_limit,
    write,
)
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from pixelssl.cli import main
from pixelssl.errors import PixelSSLError
from pixelssl.inpaint.fill import SKIP_KINDS, fill_folder, load_generator
from pixelssl.inpaint.masks import load_mask

try:  # image decoding moved to data/decode.py (issue #19)
    from pixelssl.data.decode import read_rgb
except ModuleNotFoundError:
    from pixelssl.data.datasets import read_rgb

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")


class _Loaded:
    """The generator, with a short repr for hypothesis' report of a failing case."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def __repr__(self) -> str:
        return f"generator(cnum {self.generator.cnum})"


@pytest.fixture(scope="module")
def generator(weights):
    return _Loaded(load_generator(weights))


@st.composite
def image_and_mask(draw, max_side: int = 40):
    image = draw(image_files(max_side=max_side, damaged=draw(st.sampled_from([False, False, True]))))
    return image, draw(mask_files(image.width, image.height, damaged=draw(st.sampled_from([False, False, True]))))


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit():
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _rgb(data_or_path) -> np.ndarray:
    with Image.open(data_or_path) as image:
        return np.asarray(image.convert("RGB"))


@fuzz("inpaint_fill", "cli")
@given(pair=image_and_mask(), out_name=st.sampled_from(["filled.png"] * 6 + ["nested/dir/filled.png", "filled.jpg",
                                                                             "filled.bmp", "filled", "filled.xyz"]),
       flow=st.booleans(), strategy=st.sampled_from(["auto", "crop", "whole"]),
       working_size=st.sampled_from([512] * 4 + [16, 8, 4]))
def test_fill_command_writes_the_filled_image_or_one_error_line(weights, pair, out_name, flow, strategy, working_size):
    image, mask = pair
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_path = write(tmp, f"in/photo{image.suffix}", image.data)
        mask_path = write(tmp, f"in/mask{mask.suffix}", mask.data)
        out, flow_path = tmp / "out" / out_name, tmp / "out" / "flow.png"
        argv = ["inpaint", "fill", "--weights", str(weights), "--image", str(image_path), "--mask", str(mask_path),
                "--out", str(out), "--strategy", strategy, "--working-size", str(working_size)]
        rc, stdout, stderr = _run(argv + (["--flow", str(flow_path)] if flow else []))
        assert rc in (0, 1), (rc, stderr)
        event("filled" if rc == 0 else "error: " + " ".join(w for w in stderr.split()[1:5] if "/" not in w))
        if rc == 0:
            result = _rgb(out)
            original = read_rgb(image_path).permute(1, 2, 0).numpy()  # as the command read it (alpha over grey)
            assert result.shape == original.shape
            if out.suffix.lower() in (".png", ".bmp"):  # lossless: every known pixel came back as it was
                hole = load_mask(mask_path, original.shape[:2]).numpy()
                assert np.array_equal(result[~hole], original[~hole]), "known pixels changed"
            if flow and "flow: none" not in stdout:
                assert _rgb(flow_path).shape == original.shape
        else:
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), lines
            check_message(lines[0], image_path, mask_path, out, "working size", "mask")
            assert not out.exists(), "a failed fill left its output behind"
        if (tmp / "out").exists():
            assert_no_temp_files(tmp / "out")


@st.composite
def fill_folders(draw):
    """Images and masks folders: stems matched, missing, doubled (a.png + a.jpg), with any files in them."""
    images, masks = {}, {}
    for k in range(draw(st.integers(1, 3))):
        image, mask = draw(image_and_mask(max_side=24))
        stem = draw(st.sampled_from([f"p{k}", f"p{k}", "same", f"é {k}"]))
        images[f"{stem}{image.suffix}"] = image.data
        layout = draw(st.sampled_from(["one"] * 8 + ["none", "two"]))
        if layout != "none":
            masks[f"{stem}{mask.suffix}"] = mask.data
        if layout == "two":
            masks[f"{stem}.bmp" if mask.suffix != ".bmp" else f"{stem}.png"] = mask.data
    if draw(st.sampled_from([False] * 9 + [True])):
        images["notes.txt"] = b"not an image"
    return images, masks


@fuzz("inpaint_fill", "folder")
@given(folders=fill_folders(), strategy=st.sampled_from(["auto", "crop", "whole"]))
def test_folder_fill_writes_or_names_each_image(generator, folders, strategy):
    images, masks = folders
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, data in images.items():
            write(tmp / "images", name, data)
        (tmp / "masks").mkdir()
        for name, data in masks.items():
            write(tmp / "masks", name, data)
        out = tmp / "filled"
        result = outcome(lambda: fill_folder(generator.generator, tmp / "images", tmp / "masks", out, strategy, progress=False),
                         tmp, errors=(PixelSSLError,), label="folder")
        if not result.ok:
            assert "no images found" in str(result.error)
            return
        report = result.value
        listed = [name for name in images if not name.endswith(".txt")]
        assert len(report.filled) + len(report.skipped) == len(listed)
        assert {kind for _, kind, _ in report.skipped} <= set(SKIP_KINDS)
        for _, kind, _ in report.skipped:
            event(f"skipped: {kind}")
        for name, _, reason in report.skipped:
            check_message(reason)
            assert name in listed
        written = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert written == sorted(p.name for p in report.filled)
        assert "\n" not in report.summary()
        skipped_names = {name for name, _, _ in report.skipped}
        for path in report.filled:  # the first usable image of that stem, in the folder's sorted order, was filled
            source = next(tmp / "images" / n for n in sorted(listed)
                          if Path(n).stem == path.stem and n not in skipped_names)
            assert _rgb(path).shape == tuple(read_rgb(source).permute(1, 2, 0).shape)
        if out.exists():
            assert_no_temp_files(out)


def test_speckled_mask_fills_in_one_crop_quickly(generator):
    """Found by the tests above: strategy crop compared every pair of holes (an n x n matrix): a speckled mask on a
    large photo (~600k holes at 4096 x 3072) ran out of memory; past MAX_HOLES holes it is one crop."""
    from pixelssl.inpaint.fill import MAX_HOLES, fill_image, fill_regions

    hole = torch.rand(768, 1024, generator=torch.Generator().manual_seed(0)) < 0.05
    with time_limit(30):
        assert len(fill_regions(hole)) == 1
        filled, _ = fill_image(generator.generator, torch.zeros(3, 768, 1024, dtype=torch.uint8), hole, strategy="crop")
    assert filled.shape == (3, 768, 1024) and MAX_HOLES < 20_000
