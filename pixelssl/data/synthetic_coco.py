"""The synthetic scenes as a COCO-format detection / instance-segmentation dataset (no downloads needed).

Objects are painted in order and later ones occlude earlier ones, so an instance is the *visible* part of its
object: the pixels of the scene's instance map that still carry its number (possibly several fragments).
Each instance gets its visible mask as compressed RLE, the box of that mask (``[x, y, w, h]``, pixel extents as
``pycocotools.mask.toBbox`` gives), its pixel area and ``iscrowd`` 0; categories are the synthetic classes
(id k = class k, named ``shape_texture``). Instances with fewer than ``min_area`` visible pixels (slivers left by
occlusion or the image border) are left out.

Layout written by ``export_synthetic_coco(out, ...)``::

    out/images/train_000000.png ...   out/images/val_000000.png ...
    out/train.json                    out/val.json

which is the layout ``pixelssl finetune-det --data out`` reads.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixelssl import __version__
from pixelssl.data.synthetic import SyntheticScenes

log = logging.getLogger(__name__)

MIN_AREA = 16  # visible pixels an instance needs to be annotated


def scene_instances(scenes: SyntheticScenes, index: int, min_area: int = MIN_AREA
                    ) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Scene ``index``'s image (H, W, 3) uint8 and its visible instances as (class id, bool mask (H, W))."""
    scene = scenes.render(index)
    found = []
    for number, cls in enumerate(scene.classes):
        mask = scene.instance == number  # what is left visible after the objects painted later
        if int(mask.sum()) >= min_area:
            found.append((cls, mask))
    return np.ascontiguousarray(scene.image.transpose(1, 2, 0)), found


def coco_split(scenes: SyntheticScenes, out: str | Path, prefix: str, min_area: int = MIN_AREA) -> dict[str, Any]:
    """Write every scene as ``out/images/<prefix>_NNNNNN.png`` and return the split's COCO dict."""
    from pycocotools import mask as mask_utils

    image_dir = Path(out) / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(len(scenes)):
        pixels, instances = scene_instances(scenes, index, min_area)
        name = f"{prefix}_{index:06d}.png"
        Image.fromarray(pixels).save(image_dir / name)
        height, width = pixels.shape[:2]
        images.append({"id": index + 1, "file_name": name, "width": width, "height": height})
        for cls, mask in instances:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": cls,
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(mask.sum()), "iscrowd": 0,
                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            })
    categories = [{"id": k, "name": name, "supercategory": name.split("_")[0]}
                  for k, name in enumerate(scenes.class_names[1:], start=1)]
    info = {"description": f"pixelssl synthetic scenes ({scenes.split} split)", "version": __version__,
            "date_created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "pixelssl": {"split": scenes.split, "seed": scenes.seed, "size": scenes.size,
                         "num_classes": scenes.num_object_classes, "min_area": min_area}}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def export_synthetic_coco(out: str | Path, train_images: int, val_images: int = 0, size: int = 128,
                          num_classes: int = 6, seed: int = 0, min_area: int = MIN_AREA) -> dict[str, Path]:
    """Write the synthetic train (and val, when ``val_images`` > 0) splits as COCO into ``out``; returns the jsons."""
    from pixelssl.data.coco import write_coco_json

    out = Path(out)
    written = {}
    for split, count in (("train", train_images), ("val", val_images)):
        if count <= 0:
            continue
        scenes = SyntheticScenes(count, size=size, num_classes=num_classes, seed=seed, split=split)
        data = coco_split(scenes, out, split, min_area)
        written[split] = write_coco_json(data, out / f"{split}.json")
        log.info("wrote %s: %d images, %d instances", written[split], len(data["images"]), len(data["annotations"]))
    return written
