"""evaluate.coco_eval: COCO metrics of perfect, empty and wrong-class results."""

from __future__ import annotations

import json

import pytest

from pixelssl.evaluate.coco_eval import coco_metrics


def test_coco_metrics_of_perfect_and_empty_results(coco_root):
    data = json.loads((coco_root / "val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in data["annotations"]]
    assert coco_metrics(data, perfect)["AP"] == pytest.approx(1.0)
    assert coco_metrics(data, [])["AP"] == 0.0
    shifted = [{**r, "category_id": r["category_id"] % 3 + 1} for r in perfect]  # every class wrong
    assert coco_metrics(data, shifted)["AP"] == 0.0
