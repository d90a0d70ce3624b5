"""data.synthetic_coco: the synthetic scenes as COCO; instances are the visible parts of the objects, slivers dropped."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pixelssl.data.synthetic import SyntheticScenes
from pixelssl.data.synthetic_coco import export_synthetic_coco

SIZE = 64


def test_export_loads_in_pycocotools_with_boxes_and_areas_of_the_masks(exported):
    api = COCO(str(exported / "train.json"))
    assert len(api.getImgIds()) == 5 and len(api.getAnnIds()) > 5
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == SyntheticScenes(1, num_classes=4).class_names[1:]
    for ann in api.loadAnns(api.getAnnIds()):
        mask = api.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum() >= 16 and ann["iscrowd"] == 0


def test_instances_are_the_visible_parts_of_the_objects(exported):
    """Masks of one image never overlap, carry their class in the label map, and are exactly the instance map."""
    data = json.loads((exported / "train.json").read_text())
    scenes = SyntheticScenes(5, size=SIZE, num_classes=4, seed=3, split="train")
    for image in data["images"]:
        scene = scenes.render(image["id"] - 1)
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        masks = np.stack([mask_utils.decode(a["segmentation"]) for a in anns]).astype(bool)
        assert masks.sum(0).max() == 1  # occlusion: visible parts are disjoint
        for ann, mask in zip(anns, masks):
            assert (scene.label[mask] == ann["category_id"]).all()
            number = int(scene.instance[mask][0])
            assert (mask == (scene.instance == number)).all()
        pixels = np.array(Image.open(exported / "images" / image["file_name"]))
        assert (pixels.transpose(2, 0, 1) == scene.image).all()


def test_export_drops_slivers_below_min_area(tmp_path):
    export_synthetic_coco(tmp_path, train_images=3, size=SIZE, min_area=200)
    data = json.loads((tmp_path / "train.json").read_text())
    assert all(a["area"] >= 200 for a in data["annotations"]) and not (tmp_path / "val.json").exists()
