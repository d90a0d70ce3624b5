"""data.coco: the validating COCO reader, the dataset for torchvision detectors and the semi-supervised subsets."""

from __future__ import annotations

import copy
import json
import logging
import shutil

import pytest
import torch

from pixelssl.data.coco import CocoDetection, coco_subset, read_coco_json, subset_size, write_coco_json
from pixelssl.errors import DataError

SIZE = 64


@pytest.fixture
def copy_of(exported, tmp_path):
    """A writable copy of the export, and a function that rewrites its train.json."""
    root = tmp_path / "coco"
    shutil.copytree(exported, root)

    def rewrite(change):
        data = json.loads((root / "train.json").read_text())
        change(data)
        (root / "train.json").write_text(json.dumps(data))
        return root / "train.json"

    return root, rewrite


# --------------------------------------------------------------------------- reader
def test_reader_gives_torchvision_targets(exported):
    ds = CocoDetection(exported / "train.json", exported / "images", masks=True)
    raw = read_coco_json(exported / "train.json")
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE) and 0 <= image.min() <= image.max() <= 1
    anns = [a for a in raw["annotations"] if a["image_id"] == raw["images"][0]["id"]]
    x, y, w, h = anns[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert target["labels"].tolist() == [a["category_id"] for a in anns]  # ids 1..K map to labels 1..K
    assert target["masks"].shape == (len(anns), SIZE, SIZE) and target["masks"].dtype == torch.uint8
    assert target["masks"].sum((1, 2)).tolist() == [a["area"] for a in anns]
    assert ds.num_classes == 5 and ds.class_names[0] == "background" and ds.name(0) == "train_000000.png"


def test_category_ids_map_to_contiguous_labels_and_polygons_decode(copy_of):
    root, rewrite = copy_of

    def sparse_ids(data):
        for cat in data["categories"]:
            cat["id"] *= 10
        for ann in data["annotations"]:
            ann["category_id"] *= 10
        ann = data["annotations"][0]
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]  # a polygon instead of RLE

    ds = CocoDetection(rewrite(sparse_ids), root / "images", masks=True)
    assert ds.category_ids == [10, 20, 30, 40]
    _, target = ds[0]
    assert 1 <= int(target["labels"].min()) and int(target["labels"].max()) <= 4
    assert target["masks"][0].sum() > 0


def _drop(key):
    return lambda d: d.pop(key)


BAD_CASES = {
    "no annotations list": (_drop("annotations"), "no 'annotations' list"),
    "annotation without bbox": (lambda d: d["annotations"][0].pop("bbox"), "annotations[0] (id 1) has no 'bbox'"),
    "bbox of three numbers": (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotations[0] (id 1) has bbox"),
    "box outside the image": (lambda d: d["annotations"][1].update(bbox=[50, 10, 30, 5]), "outside its image"),
    "negative width": (lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4]), "width, height >= 0"),
    "unknown category": (lambda d: d["annotations"][2].update(category_id=99), "category id 99, which is not"),
    "unknown image": (lambda d: d["annotations"][0].update(image_id=777), "image id 777, which is not"),
    "image without height": (lambda d: d["images"][1].pop("height"), "images[1] (id 2) has no 'height'"),
    "repeated image id": (lambda d: d["images"][1].update(id=1), "repeats image id 1"),
    "repeated annotation id": (lambda d: d["annotations"][1].update(id=1), "repeats annotation id 1"),
    "category without name": (lambda d: d["categories"][0].pop("name"), "categories[0] (id 1) has no 'name'"),
    "string id": (lambda d: d["annotations"][0].update(id="1"), "has an invalid 'id'"),
    "bad iscrowd": (lambda d: d["annotations"][0].update(iscrowd=2), "iscrowd 2"),
    "RLE of another size": (lambda d: d["annotations"][0]["segmentation"].update(size=[10, 10]), "RLE of size"),
    "short polygon": (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "polygon"),
    "top level a list": (lambda d: (d.clear(), d.update(images=0)), "'images' is not a list"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_json_is_one_line_naming_file_and_entry(copy_of, case):
    root, rewrite = copy_of
    change, expected = BAD_CASES[case]
    path = rewrite(change)
    with pytest.raises(DataError) as info:
        CocoDetection(path, root / "images")
    message = str(info.value)
    assert str(path) in message and expected in message and "\n" not in message


def test_not_json_missing_file_and_missing_image(copy_of):
    root, rewrite = copy_of
    (root / "broken.json").write_text('{"images": [1, 2,')
    with pytest.raises(DataError, match=r"broken.json is not valid JSON: .* line 1 column"):
        read_coco_json(root / "broken.json")
    with pytest.raises(DataError, match="nothere.json' does not exist"):
        read_coco_json(root / "nothere.json")
    (root / "images" / "train_000003.png").unlink()
    with pytest.raises(DataError, match=r"images\[3\] \(id 4\) names 'train_000003.png', which is not in"):
        CocoDetection(root / "train.json", root / "images")


def test_image_of_another_size_than_the_json_says(copy_of):
    root, rewrite = copy_of
    def change(data):
        data["images"][0]["width"] = 65
        for ann in data["annotations"]:
            ann.pop("segmentation")  # (an RLE of the old size would be refused first)

    ds = CocoDetection(rewrite(change), root / "images")
    with pytest.raises(DataError, match="image is 64x64 but .* says 65x64"):
        ds[0]


def test_masks_required_for_mask_models(copy_of):
    root, rewrite = copy_of
    path = rewrite(lambda d: d["annotations"][3].pop("segmentation"))
    assert len(CocoDetection(path, root / "images")) == 5  # boxes alone are fine
    with pytest.raises(DataError, match=r"annotations\[3\] \(id 4\) has no 'segmentation'"):
        CocoDetection(path, root / "images", masks=True)


def test_degenerate_and_crowd_boxes_are_skipped_with_a_count(copy_of, caplog):
    root, rewrite = copy_of

    def change(data):
        data["annotations"][0]["bbox"][2] = 1.0  # 1 px wide
        data["annotations"][1]["bbox"][3] = 0.5
        data["annotations"][2]["iscrowd"] = 1

    path = rewrite(change)
    total = len(json.loads(path.read_text())["annotations"])
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, root / "images")
    assert "skipped 2 degenerate box(es)" in caplog.text
    assert ds.num_degenerate == 2 and ds.num_crowd == 1 and ds.num_instances() == total - 3


# --------------------------------------------------------------------------- subsets
def _ids(subset):
    return {image["id"] for image in subset["images"]}


def test_subset_sizes_round_and_keep_at_least_one_image(fake_coco):
    assert [subset_size(1000, f) for f in (0.01, 0.1, 0.0001, 1.0)] == [10, 100, 1, 1000]
    assert subset_size(7, 0.5) == 4 and subset_size(3, 0.01) == 1
    assert len(coco_subset(fake_coco(3), 0.01)["images"]) == 1


def test_subset_is_deterministic_and_seed_dependent(fake_coco):
    data = fake_coco(200)
    assert _ids(coco_subset(data, 0.1, seed=5)) == _ids(coco_subset(copy.deepcopy(data), 0.1, seed=5))
    assert _ids(coco_subset(data, 0.1, seed=5)) != _ids(coco_subset(data, 0.1, seed=6))
    shuffled = copy.deepcopy(data)
    shuffled["images"].reverse()  # the file's order does not change the draw
    assert _ids(coco_subset(shuffled, 0.1, seed=5)) == _ids(coco_subset(data, 0.1, seed=5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smaller_fractions_are_nested_in_larger_ones(seed, fake_coco):
    data = fake_coco(500)
    sets = [_ids(coco_subset(data, f, seed)) for f in (0.01, 0.05, 0.1, 0.5, 1.0)]
    assert [len(s) for s in sets] == [5, 25, 50, 250, 500]
    assert all(small <= large for small, large in zip(sets, sets[1:]))


def test_subset_keeps_metadata_and_exactly_the_chosen_images_annotations(tmp_path, fake_coco):
    data = fake_coco(40, per_image=3)
    subset = coco_subset(data, 0.25, seed=1)
    chosen = _ids(subset)
    assert len(chosen) == 10 and len(subset["annotations"]) == 30
    assert {a["image_id"] for a in subset["annotations"]} == chosen
    assert subset["categories"] == data["categories"] and subset["info"] == data["info"]
    assert subset["pixelssl_subset"] == {"fraction": 0.25, "seed": 1, "num_images": 10, "of_images": 40}
    write_coco_json(subset, tmp_path / "s.json")
    assert _ids(read_coco_json(tmp_path / "s.json")) == chosen
