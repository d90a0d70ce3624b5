"""COCO-format detection / instance data: validated reading, a dataset for torchvision detectors, subsets.

``read_coco_json`` checks an annotation file up front (structure, ids, boxes inside their image, known category
ids, well-formed segmentations) and stops at the first problem with one line naming the file and the entry, so a
bad dataset fails before training instead of deep inside a model. ``CocoDetection`` serves
``(image, target)`` pairs in torchvision's detection format. ``coco_subset`` draws the semi-supervised 1% / 10%
(any fraction) training subsets: images are sampled with one seeded permutation, so a smaller fraction with the
same seed is always contained in a larger one.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pixelssl.data.decode import UnreadableImage, read_rgb
from pixelssl.errors import DataError, PixelSSLError
from pixelssl.io import atomic_write

log = logging.getLogger(__name__)

BOX_TOLERANCE = 1.0  # px a box may exceed its image (COCO's own boxes overshoot by rounding)
MIN_BOX_SIDE = 1.0  # boxes with w or h <= this many px are degenerate: skipped for training


# --------------------------------------------------------------------------- validation
MAX_ABS = 2**53  # larger numbers (JSON allows any) are no pixel size, id or coordinate, and overflow floats / int64


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_ABS <= value <= MAX_ABS


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_ABS)


def _quoted(text: str) -> str:
    """``'text'`` for messages; ``repr`` when it holds a line break or control character (keeps errors one line)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _entry(section: str, index: int, item: Any) -> str:
    """``images[3] (id 17)``: how an error names an entry."""
    ident = item.get("id") if isinstance(item, dict) else None
    shown = ident if _is_int(ident) else json.dumps(ident)[:40]  # any JSON value: one line, short
    return f"{section}[{index}]" + (f" (id {shown})" if ident is not None else "")


def _require_keys(item: Any, keys: dict[str, Any], where: str, name: str) -> None:
    """Each key present with a value passing its check (a type or a predicate)."""
    if not isinstance(item, dict):
        raise DataError(f"{where}: {name} is not a JSON object")
    for key, check in keys.items():
        if key not in item:
            raise DataError(f"{where}: {name} has no '{key}'")
        value = item[key]
        ok = check(value) if callable(check) and not isinstance(check, type) else isinstance(value, check)
        if not ok:
            raise DataError(f"{where}: {name} has an invalid '{key}' ({json.dumps(value)[:60]})")


def _rle_string_counts(counts: str) -> list[int] | None:
    """The run lengths of a compressed RLE string (pycocotools' ``rleFrString``), None when it is malformed."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None  # the last run is cut off
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None  # not a character of the format ('0'..'o')
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_rle_counts(counts: Any, height: int, width: int) -> str | None:
    """What is wrong with an RLE's counts for an image of ``height`` x ``width`` (None when nothing): pycocotools
    decodes runs that do not add up to the image from memory it never wrote, or fails."""
    runs = _rle_string_counts(counts) if isinstance(counts, str) else counts
    if runs is None:
        return "a compressed RLE 'counts' string that is malformed"
    if not all(_is_int(run) and run >= 0 for run in runs):
        return "RLE 'counts' that are not all non-negative integers"
    if sum(runs) != height * width:
        return f"RLE 'counts' covering {sum(runs)} pixels, not the image's {height}x{width} = {height * width}"
    return None


def _check_segmentation(segm: Any, image: dict, where: str, name: str) -> None:
    """Polygons (lists of >= 3 x, y pairs, no farther outside the image than its size) or RLE ({size: [h, w] of
    the image, counts: str or list of runs that add up to h * w})."""
    height, width = image["height"], image["width"]
    if isinstance(segm, list):
        for polygon in segm:
            if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                    or not all(_is_number(v) for v in polygon)):
                raise DataError(f"{where}: {name} has a polygon that is not a list of >= 3 x, y number pairs")
            # pycocotools rasterises any polygon, but crashes or runs out of memory on coordinates far outside
            if not all(-width <= x <= 2 * width for x in polygon[0::2]) or not all(
                    -height <= y <= 2 * height for y in polygon[1::2]):
                raise DataError(f"{where}: {name} has a polygon point more than an image size outside its image "
                                f"{image['id']} ({width}x{height})")
        return
    if isinstance(segm, dict):
        if "counts" not in segm or not isinstance(segm["counts"], (str, list)):
            raise DataError(f"{where}: {name} has an RLE segmentation without string or list 'counts'")
        if segm.get("size") != [height, width]:
            raise DataError(f"{where}: {name} has an RLE of size {json.dumps(segm.get('size'))[:60]} but its image "
                            f"is {height}x{width} (size is [height, width])")
        problem = _check_rle_counts(segm["counts"], int(height), int(width))
        if problem:
            raise DataError(f"{where}: {name} has {problem}")
        return
    raise DataError(f"{where}: {name} has a 'segmentation' that is neither polygons nor RLE")


def validate_coco(data: Any, where: str, require_masks: bool = False) -> None:
    """Raise a one-line ``DataError`` naming ``where`` and the entry for the first structural problem in ``data``."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: the top level is not a JSON object with images / annotations / categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{where}: " + (f"no '{key}' list" if key not in data else f"'{key}' is not a list"))
    positive = lambda v: _is_number(v) and v > 0 and float(v).is_integer()  # noqa: E731
    categories: set[int] = set()
    for k, cat in enumerate(data["categories"]):
        name = _entry("categories", k, cat)
        _require_keys(cat, {"id": _is_int, "name": str}, where, name)
        if cat["id"] in categories:
            raise DataError(f"{where}: {name} repeats category id {cat['id']}")
        categories.add(cat["id"])
    images: dict[int, dict] = {}
    for k, image in enumerate(data["images"]):
        name = _entry("images", k, image)
        _require_keys(image, {"id": _is_int, "file_name": str, "width": positive, "height": positive}, where, name)
        if image["id"] in images:
            raise DataError(f"{where}: {name} repeats image id {image['id']}")
        images[image["id"]] = image
    seen: set[int] = set()
    for k, ann in enumerate(data["annotations"]):
        name = _entry("annotations", k, ann)
        _require_keys(ann, {"id": _is_int, "image_id": _is_int, "category_id": _is_int, "bbox": list}, where, name)
        if ann["id"] in seen:
            raise DataError(f"{where}: {name} repeats annotation id {ann['id']}")
        seen.add(ann["id"])
        image = images.get(ann["image_id"])
        if image is None:
            raise DataError(f"{where}: {name} refers to image id {ann['image_id']}, which is not in 'images'")
        if ann["category_id"] not in categories:
            raise DataError(f"{where}: {name} has category id {ann['category_id']}, which is not in 'categories'")
        box = ann["bbox"]
        if len(box) != 4 or not all(_is_number(v) for v in box) or box[2] < 0 or box[3] < 0:
            raise DataError(f"{where}: {name} has bbox {json.dumps(box)[:60]}; expected [x, y, width, height] "
                            f"with width, height >= 0")
        x, y, w, h = box
        tol = BOX_TOLERANCE
        if x < -tol or y < -tol or x + w > image["width"] + tol or y + h > image["height"] + tol:
            raise DataError(f"{where}: {name} has bbox {box} outside its image {image['id']} "
                            f"({image['width']}x{image['height']})")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DataError(f"{where}: {name} has iscrowd {ann['iscrowd']!r}; expected 0 or 1")
        if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
            raise DataError(f"{where}: {name} has an invalid area {ann['area']!r}")
        if ann.get("segmentation", []) != []:  # [] (box-only exports write it) is no segmentation
            _check_segmentation(ann["segmentation"], image, where, name)
        elif require_masks:
            raise DataError(f"{where}: {name} has no 'segmentation' (instance masks were asked for)")


def read_coco_json(path: str | Path, require_masks: bool = False) -> dict[str, Any]:
    """Load and validate a COCO annotation file (``DataError`` with one line naming the file and entry)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"COCO annotation file '{path}' does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (is it a JSON file?)") from exc
    except (RecursionError, ValueError) as exc:  # nested deeper than Python's stack; an integer of > 4300 digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise DataError(f"{path} cannot be read as COCO JSON: {reason}") from exc
    validate_coco(data, str(path), require_masks)
    return data


# --------------------------------------------------------------------------- masks
def annotation_mask(segm: Any, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask of a COCO segmentation (polygons, uncompressed or compressed RLE)."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):  # polygons: one RLE per polygon, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": segm["counts"]}, height, width)
    else:
        rle = {"size": [height, width], "counts": segm["counts"]}  # sizes as ints (the json may say 24.0)
    return mask_utils.decode(rle)


# --------------------------------------------------------------------------- dataset
class CocoDetection:
    """A COCO-format dataset for torchvision detection models.

    ``ds[i]`` is ``(image, target)``: image float (3, H, W) in [0, 1]; target ``boxes`` (N, 4) float xyxy in
    pixels, ``labels`` (N,) int64 in 1..K (0 is background, as torchvision expects), ``image_id``, ``area``,
    ``iscrowd`` and, with ``masks=True``, ``masks`` (N, H, W) uint8. Crowd regions and degenerate boxes
    (w or h <= 1 px) are left out of the targets (the evaluation still sees the json as it is); the number of
    degenerate boxes is logged once. Label k is the k-th category by id (``category_ids[k - 1]``).
    """

    def __init__(self, annotation_file: str | Path, image_root: str | Path, masks: bool = False,
                 data: dict[str, Any] | None = None) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_root = Path(image_root)
        self.masks = masks
        self.coco = read_coco_json(self.annotation_file, masks) if data is None else data
        if data is not None:
            validate_coco(data, str(self.annotation_file), masks)
        if not self.image_root.is_dir():
            raise DataError(f"image folder '{self.image_root}' does not exist")
        categories = sorted(self.coco["categories"], key=lambda c: c["id"])
        if not categories:
            raise DataError(f"{self.annotation_file}: 'categories' is empty")
        self.category_ids = [c["id"] for c in categories]
        self.class_names = ["background"] + [str(c["name"]) for c in categories]
        self.num_classes = len(categories) + 1
        self._label = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.images = sorted(self.coco["images"], key=lambda im: im["id"])
        if not self.images:
            raise DataError(f"{self.annotation_file}: 'images' is empty")
        for k, image in enumerate(self.images):
            if not (self.image_root / image["file_name"]).is_file():
                raise DataError(f"{self.annotation_file}: {_entry('images', k, image)} names "
                                f"{_quoted(image['file_name'])}, which is not in {self.image_root}")
        self._annotations: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        self.num_degenerate = self.num_crowd = 0
        for ann in self.coco["annotations"]:
            if ann.get("iscrowd", 0):
                self.num_crowd += 1
            elif ann["bbox"][2] <= MIN_BOX_SIDE or ann["bbox"][3] <= MIN_BOX_SIDE:
                self.num_degenerate += 1
            else:
                self._annotations[ann["image_id"]].append(ann)
        if self.num_degenerate:
            log.warning("%s: skipped %d degenerate box(es) with width or height <= %g px", self.annotation_file,
                        self.num_degenerate, MIN_BOX_SIDE)

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        """The image's file name (for messages)."""
        return str(self.images[index]["file_name"])

    def image_id(self, index: int) -> int:
        return int(self.images[index]["id"])

    def num_instances(self) -> int:
        """Annotations used as training targets (no crowd, no degenerate boxes)."""
        return sum(len(anns) for anns in self._annotations.values())

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        info = self.images[index]
        path = self.image_root / info["file_name"]
        try:
            image = read_rgb(path)
        except UnreadableImage as exc:
            raise DataError(f"{self.annotation_file}: image id {info['id']}: {exc}") from exc
        height, width = image.shape[-2:]
        if (height, width) != (int(info["height"]), int(info["width"])):
            raise DataError(f"{path}: image is {width}x{height} but {self.annotation_file} says "
                            f"{int(info['width'])}x{int(info['height'])} (image id {info['id']})")
        anns = self._annotations[info["id"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        target: dict[str, Tensor] = {
            "boxes": boxes,
            "labels": torch.tensor([self._label[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": torch.tensor(int(info["id"])),
            "area": torch.tensor([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]),
            "iscrowd": torch.zeros(len(anns), dtype=torch.int64),
        }
        if self.masks:
            masks = [annotation_mask(a["segmentation"], height, width) for a in anns]
            target["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                               else torch.zeros((0, height, width), dtype=torch.uint8))
        return image.float().div_(255), target


# --------------------------------------------------------------------------- subsets
def subset_size(num_images: int, fraction: float) -> int:
    """Images kept by a fraction: ``round(fraction * n)``, at least 1 (monotone in the fraction)."""
    return min(num_images, max(1, round(fraction * num_images)))


def coco_subset(data: dict[str, Any], fraction: float, seed: int = 0) -> dict[str, Any]:
    """A new COCO dict with a seeded ``fraction`` of the images and only their annotations.

    Images are ordered by id and permuted once by ``numpy.random.default_rng(seed)``; the subset is the first
    ``subset_size`` of that permutation, so the same seed gives the same subset and a smaller fraction's subset
    is contained in a larger one's. Every other top-level key (info, licenses, categories) is kept; the subset's
    parameters are recorded under ``pixelssl_subset``.
    """
    if not 0 < fraction <= 1:
        raise PixelSSLError(f"subset fraction must be in (0, 1] (got {fraction})")
    ids = sorted(int(image["id"]) for image in data["images"])
    if not ids:
        raise DataError("cannot take a subset of a COCO file without images")
    order = np.random.default_rng(seed).permutation(len(ids))
    count = subset_size(len(ids), fraction)
    chosen = {ids[k] for k in order[:count]}
    out = {key: value for key, value in data.items() if key not in ("images", "annotations", "pixelssl_subset")}
    out["images"] = [image for image in data["images"] if image["id"] in chosen]
    out["annotations"] = [ann for ann in data["annotations"] if ann["image_id"] in chosen]
    out["pixelssl_subset"] = {"fraction": fraction, "seed": seed, "num_images": count, "of_images": len(ids)}
    return out


def write_coco_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write a COCO dict as JSON atomically (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(data))


def write_coco_subset(source: str | Path, destination: str | Path, fraction: float, seed: int = 0) -> dict[str, Any]:
    """Read ``source``, write its seeded ``fraction`` subset to ``destination``; returns the subset's summary."""
    subset = coco_subset(read_coco_json(source), fraction, seed)
    write_coco_json(subset, destination)
    summary = {**subset["pixelssl_subset"], "num_annotations": len(subset["annotations"]),
               "source": str(Path(source).resolve())}
    log.info("wrote %s: %d of %d images (fraction %g, seed %d), %d annotations", destination,
             summary["num_images"], summary["of_images"], fraction, seed, summary["num_annotations"])
    return summary
