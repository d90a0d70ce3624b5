"""Fuzzed COCO annotation files: valid files with structural mutations, and damaged / foreign JSON text.

A case passes when ``read_coco_json`` returns the data, or raises a one-line ``DataError`` naming the file; a file
it accepts must then give a ``CocoDetection`` whose every item is a well-formed (image, target) pair (boxes finite
and inside the image, labels in 1..K, masks of 0 and 1 of the image's size) or a one-line ``DataError``, and a
seeded subset of it (``write_coco_subset``) that reads back valid, written without leftovers.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_support import assert_no_temp_files, fuzz, json_scalars, json_values, outcome
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from pixelssl.errors import DataError

try:  # the COCO reader is moving from evaluate/ to data/ (issue #19)
    from pixelssl.data.coco import CocoDetection, read_coco_json, write_coco_subset
except ModuleNotFoundError:
    from pixelssl.data.coco import CocoDetection, read_coco_json, write_coco_subset


def _rle_string(mask: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def _rle_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    return [*counts, run]


@st.composite
def coco_dicts(draw) -> dict:
    """A valid COCO dict: 1-3 small images, 1-3 categories, 0-5 annotations (boxes, polygons, RLE of both kinds)."""
    categories = [{"id": cid, "name": f"class {cid}", "supercategory": "thing"}
                  for cid in draw(st.lists(st.integers(0, 90), min_size=1, max_size=3, unique=True))]
    images = []
    for k, iid in enumerate(draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True))):
        images.append({"id": iid, "file_name": f"img_{k}.png", "width": draw(st.integers(1, 24)),
                       "height": draw(st.integers(1, 24))})
    annotations = []
    for aid in draw(st.lists(st.integers(1, 10**6), max_size=5, unique=True)):
        image = draw(st.sampled_from(images))
        width, height = image["width"], image["height"]
        x, y = draw(st.floats(0, width)), draw(st.floats(0, height))
        box = [x, y, draw(st.floats(0, width - x)), draw(st.floats(0, height - y))]
        ann = {"id": aid, "image_id": image["id"], "category_id": draw(st.sampled_from(categories))["id"],
               "bbox": box, "area": box[2] * box[3], "iscrowd": draw(st.sampled_from([0, 0, 1]))}
        kind = draw(st.sampled_from(["none", "polygon", "rle_list", "rle_string"]))
        if kind == "polygon":
            points = draw(st.lists(st.tuples(st.floats(0, width), st.floats(0, height)), min_size=3, max_size=6))
            ann["segmentation"] = [[v for point in points for v in point]]
        elif kind != "none":
            seed = draw(st.integers(0, 2**16))
            mask = np.random.default_rng(seed).random((height, width)) < 0.4
            counts = _rle_counts(mask) if kind == "rle_list" else _rle_string(mask)
            ann["segmentation"] = {"size": [height, width], "counts": counts}
        annotations.append(ann)
    return {"info": {"description": "fuzz"}, "images": images, "annotations": annotations, "categories": categories}


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _mutate(data: dict, draw) -> dict:
    """0-3 edits at random places of the tree: a new value, a deleted key / entry, a duplicated entry."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_paths(data))
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        *parents, last = path
        node = data
        for part in parents:
            node = node[part]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate", "scale"]))
        if action == "delete":
            del node[last]
        elif action == "duplicate" and isinstance(node, list):
            node.append(copy.deepcopy(node[last]))
        elif action == "scale" and isinstance(node[last], (int, float)) and not isinstance(node[last], bool):
            node[last] = node[last] * draw(st.sampled_from([-1, 0, 2, 1000, 10**9, 1e300, 0.5]))
        else:
            node[last] = draw(json_values(6) | json_scalars())
    return data


def _write_images(data: dict, root: Path) -> None:
    """A PNG of the stated size for each image entry whose file name and size are still plain."""
    for image in data.get("images", []) if isinstance(data.get("images"), list) else []:
        if not isinstance(image, dict):
            continue
        name, width, height = image.get("file_name"), image.get("width"), image.get("height")
        if not (isinstance(name, str) and name.startswith("img_") and "/" not in name and "\x00" not in name):
            continue
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in (width, height)):
            width, height = 5, 4  # a size that the entry does not state: the reader must say so
        Image.new("RGB", (width, height), (90, 140, 200)).save(root / name)


def _check_item(ds: CocoDetection, index: int, image: torch.Tensor, target: dict) -> None:
    height, width = image.shape[-2:]
    assert image.dtype == torch.float32 and image.shape[0] == 3
    boxes, labels = target["boxes"], target["labels"]
    assert boxes.shape == (len(labels), 4) and torch.isfinite(boxes).all()
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= width).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= height).all()
    assert ((labels >= 1) & (labels < ds.num_classes)).all()
    if "masks" in target:
        masks = target["masks"]
        assert masks.shape == (len(labels), height, width) and masks.dtype == torch.uint8
        assert masks.numel() == 0 or int(masks.max()) <= 1, "mask decoded to values other than 0 and 1"


@fuzz("coco", "structure")
@given(base=coco_dicts(), data=st.data(), masks=st.booleans())
def test_mutated_coco_files_are_read_or_refused_by_entry(base, data, masks):
    coco = _mutate(base, data.draw)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "instances.json"
        path.write_text(json.dumps(coco, allow_nan=True))
        root = tmp / "images"
        root.mkdir()
        _write_images(coco, root)
        read = outcome(lambda: read_coco_json(path, require_masks=masks), path, errors=(DataError,), label="read")
        if not read.ok:
            return
        built = outcome(lambda: CocoDetection(path, root, masks=masks), path, root, errors=(DataError,),
                        label="dataset")
        if built.ok:
            ds = built.value
            for index in range(len(ds)):
                item = outcome(lambda index=index: ds[index], path, root, errors=(DataError,), label="item")
                if item.ok:
                    _check_item(ds, index, *item.value)
        fraction = data.draw(st.sampled_from([1.0, 0.5, 0.01]))
        out = tmp / "subsets" / "sub.json"
        written = outcome(lambda: write_coco_subset(path, out, fraction, seed=data.draw(st.integers(0, 9))), path)
        if written.ok:
            read_coco_json(out)  # a subset of a valid file is valid
        assert_no_temp_files(tmp)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def coco_texts(draw) -> bytes:
    """JSON text damaged or foreign: truncated, junk inserted, another encoding, deep nesting, huge numbers."""
    text = json.dumps(draw(coco_dicts()))
    kind = draw(st.sampled_from(["truncate", "insert", "utf16", "bom", "deep", "digits", "scalar", "binary", "nan",
                                 "empty"]))
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))].encode()
    if kind == "insert":
        at = draw(st.integers(0, len(text)))
        return (text[:at] + draw(st.sampled_from([",", "}", "]", '"', "\\", "\x00", "NaN", "\ud800", "é"]))
                + text[at:]).encode("utf-8", "surrogatepass")
    if kind == "utf16":
        return text.encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if kind == "deep":
        return _deep(draw(st.sampled_from([100, 5000, 100_000]))).encode()
    if kind == "digits":
        digits = "9" * draw(st.sampled_from([20, 400, 5000]))
        return text.replace('"width": ', f'"width": {digits}', 1).encode()
    if kind == "scalar":
        return json.dumps(draw(json_values(4)), allow_nan=True).encode()
    if kind == "nan":
        return text.replace('"height": ', '"height": NaN, "x": ', 1).encode()
    if kind == "binary":
        return draw(st.binary(max_size=200))
    return b""


@fuzz("coco", "text")
@given(raw=coco_texts())
def test_damaged_coco_text_is_one_line_error(raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "annotations.json"
        path.write_bytes(raw)
        result = outcome(lambda: read_coco_json(path), path, errors=(DataError,), label="read")
    if result.ok:
        assert isinstance(result.value, dict)


def test_rle_helpers_agree_with_pycocotools():
    from pycocotools import mask as mask_utils

    mask = np.random.default_rng(0).random((7, 5)) < 0.5
    rle = mask_utils.frPyObjects({"size": [7, 5], "counts": _rle_counts(mask)}, 7, 5)
    assert np.array_equal(mask_utils.decode(rle), mask)
    assert np.array_equal(mask_utils.decode({"size": [7, 5], "counts": _rle_string(mask)}), mask)


def _one_annotation(segmentation, width=4, height=3) -> dict:
    return {"images": [{"id": 1, "file_name": "img_0.png", "width": width, "height": height}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2],
                             "segmentation": segmentation}]}


def test_cases_the_fuzzer_found_are_one_line_errors(tmp_path):
    """Found by the tests above: each crashed (RecursionError, ValueError, OverflowError), decoded uninitialised
    memory into a mask, or took pycocotools down (segfault, out of memory) before the checks named them."""
    path = tmp_path / "bad.json"
    cases = {
        _deep(100_000): "nested too deeply",
        json.dumps(_one_annotation([[0, 0, 1, 1, 2, 2]])).replace('"width": 4', '"width": ' + "9" * 5000): "digits",
        json.dumps(_one_annotation([[0, 0, 1, 1, 2, 2]])).replace('"width": 4', '"width": ' + "9" * 400): "'width'",
        json.dumps(_one_annotation([[0, 0, 1e300, 0, 0, 3]])): "polygon",
        json.dumps(_one_annotation([[0, 0, 4e8, 0, 0, 3]])): "polygon point",
        json.dumps(_one_annotation({"size": [3, 4], "counts": ""})): "covering 0 pixels",
        json.dumps(_one_annotation({"size": [3, 4], "counts": [5]})): "covering 5 pixels",
        json.dumps(_one_annotation({"size": [3, 4], "counts": [-5, 17]})): "non-negative",
        json.dumps(_one_annotation({"size": [3, 4], "counts": "!!!!"})): "malformed",
        json.dumps(_one_annotation({"size": [3, 4], "counts": "\x00\xff"})): "malformed",
    }
    for text, words in cases.items():
        path.write_text(text)
        with pytest.raises(DataError) as error:
            read_coco_json(path)
        message = str(error.value)
        assert words in message and str(path) in message and "\n" not in message, message


def test_names_with_line_breaks_stay_on_one_line(tmp_path):
    """Found by the thorough profile: an id or file name holding a line break made a two-line error."""
    path = tmp_path / "names.json"
    for field, value in (("id", "\n"), ("file_name", "a\nb.png")):
        data = _one_annotation([])
        data["images"][0][field] = value
        path.write_text(json.dumps(data))
        with pytest.raises(DataError) as error:
            CocoDetection(path, tmp_path)
        assert "\n" not in str(error.value) and str(path) in str(error.value), str(error.value)


def test_empty_segmentation_is_no_segmentation(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(_one_annotation([])))
    assert read_coco_json(path)["annotations"][0]["segmentation"] == []
    with pytest.raises(DataError, match="has no 'segmentation'"):
        read_coco_json(path, require_masks=True)
    Image.new("RGB", (4, 3)).save(tmp_path / "img_0.png")
    assert len(CocoDetection(path, tmp_path)[0][1]["boxes"]) == 1
