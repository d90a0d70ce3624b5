"""Confusion-matrix metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pixelssl.evaluate.metrics import ConfusionMatrix, confusion_matrix, jsonable, metrics_from_confusion


def test_confusion_matrix_counts_ground_truth_rows_and_prediction_columns():
    target = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    expected = torch.tensor([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert torch.equal(confusion_matrix(pred, target, 3, ignore_index=None), expected)


def test_hand_made_matrix_gives_hand_computed_metrics():
    matrix = torch.tensor([[3, 1, 0], [0, 2, 2], [1, 0, 1]])  # rows: ground truth
    m = metrics_from_confusion(matrix)
    iou = [3 / (4 + 4 - 3), 2 / (4 + 3 - 2), 1 / (2 + 3 - 1)]
    assert m["per_class_iou"] == pytest.approx(iou)
    assert m["miou"] == pytest.approx(sum(iou) / 3)
    assert m["pixel_acc"] == pytest.approx(6 / 10)
    assert m["per_class_acc"] == pytest.approx([3 / 4, 2 / 4, 1 / 2])
    assert m["mean_acc"] == pytest.approx((3 / 4 + 2 / 4 + 1 / 2) / 3)
    assert m["num_pixels"] == 10


def test_ignore_index_pixels_are_not_counted():
    target = torch.tensor([[0, 255], [1, 255]])
    pred = torch.tensor([[0, 1], [1, 0]])
    cm = ConfusionMatrix(2, ignore_index=255)
    cm.update(pred, target)
    m = cm.compute()
    assert m["num_pixels"] == 2
    assert m["miou"] == 1.0 and m["pixel_acc"] == 1.0


def test_class_absent_from_ground_truth_and_prediction_is_nan_and_excluded():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    m = cm.compute()
    assert math.isnan(m["per_class_iou"][2]) and math.isnan(m["per_class_acc"][2])
    assert m["miou"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_class_predicted_but_absent_from_ground_truth_counts_with_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2]), torch.tensor([0, 0]))
    m = cm.compute()
    assert m["per_class_iou"][2] == 0.0
    assert m["miou"] == pytest.approx((1 / 2 + 0.0) / 2)  # class 1 absent from both: excluded
    assert math.isnan(m["per_class_acc"][2])


def test_batch_accumulation_equals_one_shot():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (10, 17, 23), generator=generator)
    target[target == 5] = 255
    pred = torch.randint(0, 5, (10, 17, 23), generator=generator)
    whole = ConfusionMatrix(5)
    whole.update(pred, target)
    batched = ConfusionMatrix(5)
    for p, t in zip(pred.split(3), target.split(3), strict=True):
        batched.update(p, t)
    assert torch.equal(whole.matrix, batched.matrix)
    assert jsonable(whole.compute()) == jsonable(batched.compute())
    assert whole.matrix.dtype == torch.int64 and int(whole.matrix.sum()) == int((target != 255).sum())


def test_out_of_range_label_is_an_error():
    with pytest.raises(ValueError, match="label value 7"):
        confusion_matrix(torch.tensor([0]), torch.tensor([7]), 3)


def test_jsonable_replaces_nan_with_none():
    assert jsonable({"a": [1.0, math.nan], "b": {"c": math.inf}}) == {"a": [1.0, None], "b": {"c": None}}
