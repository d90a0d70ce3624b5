"""Fuzzed segmentation folders: ``images/`` + ``labels/`` pairs of any mode, size and state, and ``classes.json``.

A case passes when ``SegmentationFolder`` (what ``probe`` / ``finetune-seg`` / ``train.monitor_data`` read) and
each of its steps (``num_classes``, ``class_names``, ``ds[i]``, ``validate()``) returns a result or raises a one-line
``DataError`` naming the folder or a file in it; a served pair is an RGB image and an int64 label of its size with
values in 0..num_classes-1 or the ignore index.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_support import damage, fuzz, image_files, json_values, outcome, write
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pixelssl.data.datasets import SegmentationFolder
from pixelssl.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

LABEL_MODES = ("L",) * 6 + ("P",) * 6 + ("RGB", "1", "I;16", "LA", "RGBA")


def _label_png(mode: str, values: np.ndarray) -> bytes:
    if mode == "1":
        image = Image.fromarray(values > 0)
    elif mode == "I;16":
        image = Image.fromarray(values.astype(np.uint16))
    else:
        image = Image.fromarray(values.astype(np.uint8), mode="L")
        if mode == "P":
            image = image.convert("P")
            image.putpalette(list(range(256)) * 3)
            image = Image.fromarray(values.astype(np.uint8), mode="P")  # the raw indices are the classes
        elif mode != "L":
            image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def classes_files(draw, num_classes: int) -> bytes | None:
    kind = draw(st.sampled_from(["none"] * 6 + ["valid"] * 6 + ["count", "ignore", "junk", "json", "deep", "binary"]))
    names = [f"class {k}" for k in range(num_classes)]
    if kind == "none":
        return None
    if kind == "valid":
        return json.dumps({"classes": names, "ignore_index": draw(st.sampled_from([255, 0, 7]))}).encode()
    if kind == "count":
        return json.dumps({"classes": names[: draw(st.integers(0, num_classes))] + ["extra"] * draw(st.integers(0, 2))
                           }).encode()
    if kind == "ignore":
        return json.dumps({"classes": names, "ignore_index": draw(json_values(3))}, allow_nan=True).encode()
    if kind == "json":
        return json.dumps(draw(json_values(6)), allow_nan=True).encode()
    if kind == "deep":
        return b'{"classes": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    if kind == "binary":
        return draw(st.binary(max_size=64))
    return b'{"classes": ["a", '  # truncated


@st.composite
def segmentation_folders(draw) -> dict:
    """{relative path: bytes} of a dataset root (and its parent's classes.json), plus the constructor's arguments."""
    num_classes = draw(st.integers(1, 5))
    files: dict[str, bytes] = {}
    for k in range(draw(st.integers(1, 3))):
        stem = draw(st.sampled_from([f"s{k}", f"nested/s{k}", f"é {k}", f"s{k}.v2"]))
        width, height = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        image = draw(image_files(size=(width, height), exif=False))
        pairing = draw(st.sampled_from(["pair"] * 30 + ["no_label", "no_image", "twin_image", "hidden"]))
        if pairing != "no_image":
            files[f"root/images/{'.' if pairing == 'hidden' else ''}{stem}{image.suffix}"] = image.data
        if pairing == "twin_image":
            files[f"root/images/{stem}.bmp"] = image.data
        if pairing != "no_label":
            label_w, label_h = (width, height) if draw(st.sampled_from([True] * 7 + [False])) else (width + 1, max(1, height - 1))
            top = draw(st.sampled_from([num_classes, num_classes, num_classes + 1, 256]))
            values = np.random.default_rng(draw(st.integers(0, 999))).integers(0, top, (label_h, label_w))
            if draw(st.booleans()):
                values[0, 0] = 255  # the usual ignore index
            data, _ = damage(_label_png(draw(st.sampled_from(LABEL_MODES)), values), draw)
            files[f"root/labels/{stem}{draw(st.sampled_from(['.png', '.png', '.PNG']))}"] = data
    classes = draw(classes_files(num_classes))
    if classes is not None:
        files[draw(st.sampled_from(["root/classes.json", "classes.json"]))] = classes
    if draw(st.sampled_from([False] * 29 + [True])):
        files = {k: v for k, v in files.items() if not k.startswith("root/labels/")}  # no labels folder at all
    args = {"ignore_index": draw(st.sampled_from([None, None, 255, 0])),
            "num_classes": draw(st.sampled_from([None] * 6 + [num_classes] * 3 + [num_classes + 1, 0]))}
    return {"files": files, "args": args}


def _check_pair(ds: SegmentationFolder, image: torch.Tensor, label: torch.Tensor) -> None:
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert label.dtype == torch.int64 and label.shape == image.shape[1:]
    valid = (label >= 0) & (label < ds.num_classes) | (label == ds.ignore_index)
    assert bool(valid.all()), "label values outside 0..num_classes-1 served"


@fuzz("segmentation", "folders")
@given(case=segmentation_folders())
def test_segmentation_folders_serve_checked_pairs_or_name_the_problem(case):
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in case["files"].items():
            write(Path(tmp), name, data)
        root = Path(tmp) / "root"
        (root / "images").mkdir(parents=True, exist_ok=True)
        built = outcome(lambda: SegmentationFolder(root, **case["args"]), tmp, errors=(DataError,), label="folder")
        if not built.ok:
            return
        ds = built.value
        counted = outcome(lambda: (ds.num_classes, ds.class_names), tmp, errors=(DataError,), label="classes")
        if not counted.ok:
            return
        num_classes, names = counted.value
        assert num_classes >= 1 and len(names) == num_classes
        for index in range(len(ds)):
            pair = outcome(lambda index=index: ds[index], tmp, errors=(DataError,), label="pair")
            if pair.ok:
                _check_pair(ds, *pair.value)
        outcome(ds.validate, tmp, errors=(DataError,), label="validate")


def test_deeply_nested_classes_json_is_one_line_error(tmp_path):
    """Found by the test above: a classes.json nested deeper than Python's stack raised RecursionError."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "images" / "a.png")
    Image.new("L", (2, 2)).save(tmp_path / "labels" / "a.png")
    (tmp_path / "classes.json").write_text('{"classes": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(DataError, match="nested too deeply") as error:
        SegmentationFolder(tmp_path)
    assert str(tmp_path / "classes.json") in str(error.value)
