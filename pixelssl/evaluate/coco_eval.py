"""COCO detection / instance-segmentation metrics with pycocotools (AP, AP50, AP75, APs/m/l and AR).

``predict_coco`` runs a torchvision detector over a ``CocoDetection`` set and returns results in COCO's format
(boxes xywh in original-image pixels, masks as RLE, category ids as in the json); ``coco_metrics`` scores them
against the dataset's annotation dict with ``COCOeval``. Values are fractions in [0, 1] as pycocotools reports
them (papers print them x100); an area range without ground truth gives ``None``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@torch.no_grad()
def predict_coco(model: nn.Module, dataset: Any, device: torch.device, batch_size: int = 4,
                 indices: range | list[int] | None = None) -> tuple[list[dict], list[dict]]:
    """(box results, mask results) of ``model`` (in eval mode) over ``dataset`` items ``indices`` (default all)."""
    from pycocotools import mask as mask_utils

    was_training = model.training
    model.eval()
    boxes_out: list[dict] = []
    masks_out: list[dict] = []
    indices = list(range(len(dataset)) if indices is None else indices)
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start:start + batch_size]]
        outputs = model([image.to(device) for image, _ in items])
        for (_, target), output in zip(items, outputs):
            image_id = int(target["image_id"])
            boxes = output["boxes"].float().cpu()
            boxes[:, 2:] -= boxes[:, :2]  # xyxy -> xywh
            categories = [dataset.category_ids[int(label) - 1] for label in output["labels"].cpu()]
            scores = output["scores"].float().cpu().tolist()
            for box, category, score in zip(boxes.tolist(), categories, scores):
                boxes_out.append({"image_id": image_id, "category_id": category,
                                  "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
            if "masks" in output:  # (N, 1, H, W) probabilities at the original image size
                binary = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
                for mask, category, score in zip(binary, categories, scores):
                    rle = mask_utils.encode(np.asfortranarray(mask))
                    rle["counts"] = rle["counts"].decode("ascii")
                    masks_out.append({"image_id": image_id, "category_id": category, "segmentation": rle,
                                      "score": round(score, 5)})
    model.train(was_training)
    return boxes_out, masks_out


def _ground_truth(data: dict[str, Any]) -> Any:
    """A pycocotools COCO index over a validated annotation dict (areas filled in where the json has none)."""
    from pycocotools.coco import COCO

    data = copy.deepcopy(data)
    for ann in data["annotations"]:
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
    api = COCO()
    api.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def coco_metrics(data: dict[str, Any], results: list[dict], iou_type: str = "bbox") -> dict[str, Any]:
    """COCOeval's 12 summary numbers (``STAT_NAMES``) for ``results`` against annotation dict ``data``.

    No results at all scores 0 everywhere (pycocotools cannot load an empty result list).
    """
    from pycocotools.cocoeval import COCOeval

    gt = _ground_truth(data)
    if not results:
        return {name: 0.0 for name in STAT_NAMES} | {"num_detections": 0}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    log.debug("COCOeval %s:\n%s", iou_type, text.getvalue())
    stats = {name: (None if value < 0 else float(value)) for name, value in zip(STAT_NAMES, evaluator.stats)}
    return stats | {"num_detections": len(results)}
