"""Semantic-segmentation metrics from an integer confusion matrix, exact over any number of batches.

Convention (as mmsegmentation's ``IoUMetric``): rows are ground truth, columns are predictions; pixels whose
ground truth is ``ignore_index`` are skipped. A class's IoU is ``TP / (TP + FP + FN)``; it is NaN when the class
occurs neither in the ground truth nor in the predictions of the evaluated set, and mIoU is the mean over the
classes whose IoU is defined (a class predicted but absent from the ground truth counts, with IoU 0).
Class accuracy is ``TP / (TP + FN)``, NaN for classes absent from the ground truth; mean class accuracy
averages the defined ones.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from pixelssl.dist import is_distributed


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255) -> Tensor:
    """(num_classes, num_classes) int64 counts of (ground truth, prediction) pairs; void pixels are skipped."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        bad = int(target.max()) if int(target.max()) >= num_classes else int(target.min())
        raise ValueError(f"label value {bad} is outside 0..{num_classes - 1} (ignore_index={ignore_index})")
    if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= num_classes):
        raise ValueError(f"predicted class outside 0..{num_classes - 1}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _nanmean(values: Tensor) -> float:
    defined = values[~torch.isnan(values)]
    return float(defined.mean()) if defined.numel() else math.nan


def metrics_from_confusion(matrix: Tensor) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and (mean) class accuracy of a confusion matrix (see module doc)."""
    matrix = matrix.double()
    tp = matrix.diagonal()
    gt = matrix.sum(dim=1)  # pixels of each class in the ground truth
    predicted = matrix.sum(dim=0)
    union = gt + predicted - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, math.nan))
    total = float(matrix.sum())
    return {
        "miou": _nanmean(iou),
        "pixel_acc": float(tp.sum()) / total if total else math.nan,
        "mean_acc": _nanmean(acc),
        "per_class_iou": iou.tolist(),
        "per_class_acc": acc.tolist(),
        "num_pixels": int(total),
    }


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches: ``update(pred, target)`` then ``compute()``."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (got {num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of predicted class indices and labels (any matching shape, any device)."""
        counts = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.matrix = self.matrix.to(counts.device) + counts

    def all_reduce(self) -> None:
        """Sum the counts of all processes when torch.distributed is initialised (no-op otherwise)."""
        import torch.distributed as dist

        if is_distributed():
            dist.all_reduce(self.matrix)

    def compute(self) -> dict[str, Any]:
        """Metrics of everything accumulated so far (see ``metrics_from_confusion``)."""
        return metrics_from_confusion(self.matrix.cpu())


def jsonable(value: Any) -> Any:
    """A copy of nested dicts / lists / floats with NaN and inf replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
