"""data.datasets: image folders and segmentation folders: scanning, bad files, clear one-line errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.data.datasets import ImageFolder, SegmentationFolder, load_with_fallback
from pixelssl.data.decode import UnreadableImage
from pixelssl.errors import DataError


def _save_rgb(path: Path, w: int = 12, h: int = 8, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WEBP"}


# ------------------------------------------------------------------------------------------------ ImageFolder
def test_scan_is_recursive_sorted_and_case_insensitive(tmp_path):
    for rel in ("b.jpg", "a/x.PNG", "a/deep/y.bmp", "c.webp", "d.JPEG"):
        _save_rgb(tmp_path / rel, fmt=FORMATS[rel.rsplit(".", 1)[1].lower()])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._b.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata twin: hidden, skipped
    folder = ImageFolder(tmp_path)
    names = [Path(folder.describe(i)).relative_to(tmp_path).as_posix() for i in range(len(folder))]
    assert names == ["a/deep/y.bmp", "a/x.PNG", "b.jpg", "c.webp", "d.JPEG"]
    for i in range(len(folder)):
        image = folder.load(i)
        assert image.dtype == torch.uint8 and image.shape == (3, 8, 12)


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    _save_rgb(tmp_path / "big.png", 30, 30)
    folder = ImageFolder(tmp_path, max_pixels=500)
    with pytest.raises(UnreadableImage, match="30x30 pixels exceeds the limit of 500"):
        folder.load(0)


def test_zero_byte_files_are_excluded_with_a_warning(tmp_path, caplog):
    _save_rgb(tmp_path / "ok.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="pixelssl"):
        folder = ImageFolder(tmp_path)
    assert len(folder) == 1
    assert "empty.jpg" in caplog.text


def test_fallback_skips_unreadable_files_and_reports_them(tmp_path):
    _save_rgb(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"garbage")
    (tmp_path / "c.jpg").write_bytes(b"more garbage")
    _save_rgb(tmp_path / "d.png", 5, 7)
    folder = ImageFolder(tmp_path)
    image, failed = load_with_fallback(folder, 1)
    assert image.shape == (3, 7, 5)
    assert failed == [str(tmp_path / "b.png"), str(tmp_path / "c.jpg")]
    image, failed = load_with_fallback(folder, 0)
    assert failed == []


def test_fallback_gives_up_naming_first_file(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"3 consecutive images failed to load, starting at .*b\.png"):
        load_with_fallback(ImageFolder(tmp_path), 1)


def test_missing_folder_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        ImageFolder(tmp_path / "nowhere")


def test_folder_without_images_names_folder_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError) as info:
        ImageFolder(tmp_path)
    assert str(tmp_path) in str(info.value) and ".jpg" in str(info.value) and ".webp" in str(info.value)


# ----------------------------------------------------------------------------------------- SegmentationFolder
def _seg_dataset(root: Path, labels: dict[str, np.ndarray], image_sizes: dict[str, tuple[int, int]] | None = None,
                 classes: dict | None = None, palette: bool = False) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for name, label in labels.items():
        h, w = (image_sizes or {}).get(name, label.shape)
        _save_rgb(root / "images" / f"{name}.jpg", w, h)
        image = Image.fromarray(label.astype(np.uint8), mode="L")
        if palette:
            image = image.convert("P")
            image.putpalette([(7 * i) % 256 for i in range(768)])
        image.save(root / "labels" / f"{name}.png")
    if classes is not None:
        (root / "classes.json").write_text(json.dumps(classes))
    return root


def _label(values: list[int], h: int = 6, w: int = 8) -> np.ndarray:
    return np.resize(np.array(values, dtype=np.uint8), (h, w))


def test_segmentation_pairs_images_with_labels(tmp_path):
    _seg_dataset(tmp_path, {"b": _label([0, 1]), "a": _label([2, 255])})
    ds = SegmentationFolder(tmp_path)
    assert len(ds) == 2 and [ds.name(0), ds.name(1)] == ["a", "b"]
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 8)
    assert label.dtype == torch.int64 and label.shape == (6, 8)
    assert ds.ignore_index == 255 and ds.num_classes == 3  # inferred: max label 2, void excluded
    assert ds.class_names == ["class0", "class1", "class2"]


def test_palette_labels_use_raw_indices(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 1, 2, 3])}, palette=True)
    assert set(SegmentationFolder(tmp_path)[0][1].unique().tolist()) == {0, 1, 2, 3}


def test_classes_json_sets_names_and_ignore_index(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 1, 2])}, classes={"classes": ["sky", "road", "car"], "ignore_index": 2})
    ds = SegmentationFolder(tmp_path)
    assert ds.class_names == ["sky", "road", "car"] and ds.num_classes == 3 and ds.ignore_index == 2


def test_classes_json_in_parent_serves_split_folders(tmp_path):
    _seg_dataset(tmp_path / "train", {"a": _label([0, 1])})
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["x", "y"]}))
    ds = SegmentationFolder(tmp_path / "train")
    assert ds.class_names == ["x", "y"] and ds.ignore_index == 255


def test_malformed_classes_json_names_file_and_key(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0])}, classes={"names": ["x"]})
    with pytest.raises(DataError, match=r'classes\.json.*"classes"'):
        SegmentationFolder(tmp_path)


def test_num_classes_argument_without_classes_json(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 1])})
    assert SegmentationFolder(tmp_path, num_classes=5).num_classes == 5


def test_image_without_label_reports_count_and_example(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0])})
    _save_rgb(tmp_path / "images" / "lonely.png")
    _save_rgb(tmp_path / "images" / "lonely2.png")
    with pytest.raises(DataError, match=r"2 image\(s\) .* have no label PNG .*lonely\.png"):
        SegmentationFolder(tmp_path)


def test_label_without_image_reports_it(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0])})
    Image.fromarray(_label([0])).save(tmp_path / "labels" / "orphan.png")
    with pytest.raises(DataError, match=r"1 label\(s\) .* have no image .*orphan\.png"):
        SegmentationFolder(tmp_path)


def test_missing_labels_folder_is_named(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="labels"):
        SegmentationFolder(tmp_path)


def test_size_mismatch_is_found_lazily_and_names_the_label(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 1]), "b": _label([1])}, image_sizes={"b": (10, 8)})
    ds = SegmentationFolder(tmp_path, num_classes=2)  # construction does not decode
    ds[0]
    with pytest.raises(DataError, match=r"label .*b\.png is 8x6 but its image is 8x10"):
        ds[1]


def test_out_of_range_label_names_file_and_values(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 1, 7, 255])})
    ds = SegmentationFolder(tmp_path, num_classes=3)
    with pytest.raises(DataError, match=r"label .*a\.png has values 7 outside 0\.\.2 \(ignore_index=255\)"):
        ds[0]


def test_validate_reports_first_problem_and_counts_the_rest(tmp_path):
    _seg_dataset(tmp_path, {"a": _label([0, 9]), "b": _label([0, 1]), "c": _label([9])})
    ds = SegmentationFolder(tmp_path, num_classes=2)
    with pytest.raises(DataError, match=r"a\.png has values 9 .*\(and 1 more problem"):
        ds.validate()
    SegmentationFolder(tmp_path, num_classes=10).validate()


def test_camvid_shapes_and_classes(camvid_root):
    train = SegmentationFolder(camvid_root / "train")
    val = SegmentationFolder(camvid_root / "val")
    assert (len(train), len(val)) == (367, 101)
    assert train.num_classes == 11 and train.ignore_index == 11
    assert train.class_names[0] == "sky" and len(train.class_names) == 11
    image, label = val[0]
    assert image.shape == (3, 360, 480) and image.dtype == torch.uint8
    assert label.shape == (360, 480) and label.dtype == torch.int64
    assert int(label.max()) <= 11


def test_camvid_val_validates(camvid_root):
    SegmentationFolder(camvid_root / "val").validate()
