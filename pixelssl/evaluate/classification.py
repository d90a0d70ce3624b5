"""Image-level linear classification probe: pooled frozen features -> BatchNorm standardisation -> linear layer.

The linear-evaluation protocol of the MoCo / PixPro papers, with features cached once per image (resize the
shorter side, centre crop, no augmentation) so it trains in seconds; reports top-1 and top-5 accuracy.
Datasets use torchvision's ImageFolder layout: ``root/<class name>/<image>``.

Usage::

    from pixelssl.evaluate.classification import ImageFolderDataset, linear_probe_classification
    train = ImageFolderDataset("data/train")
    result = linear_probe_classification(backbone, train, ImageFolderDataset("data/val", classes=train.classes))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from pixelssl.config import opt, register_validator, require
from pixelssl.data.datasets import is_image_file
from pixelssl.data.decode import read_rgb
from pixelssl.errors import DataError
from pixelssl.evaluate.common import select_device, threads, typed_config
from pixelssl.evaluate.features import check_levels, frozen_features
from pixelssl.evaluate.probe import FeatureBucket, LinearFitConfig, LinearProbeHead, train_cached, validate_linear_fit

log = logging.getLogger(__name__)

NO_IGNORE = -100  # every image counts


class ImageFolderDataset:
    """``root/<class>/<image>`` (sorted classes, images found recursively): ``ds[i] -> (uint8 (3, H, W), class)``."""

    def __init__(self, root: str | Path, classes: list[str] | None = None) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} {'is not a folder' if self.root.exists() else 'does not exist'}")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{self.root} has no class sub-folders (expected root/<class name>/<image>)")
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise DataError(f"{self.root / unknown[0]} is a class the training set does not have")
        self.samples: list[tuple[Path, int]] = []
        for index, name in enumerate(self.classes):
            folder = self.root / name
            files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p.name)) \
                if folder.is_dir() else []
            if classes is None and not files:
                raise DataError(f"class folder {folder} holds no images")
            self.samples += [(path, index) for path in files]

    @property
    def num_classes(self) -> int:
        """Number of classes (sub-folders of the training set)."""
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Class names in index order (sorted folder names)."""
        return list(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return read_rgb(path), label

    def name(self, index: int) -> str:
        """The file path of item ``index``, for messages."""
        return str(self.samples[index][0])


@dataclass
class ClsProbeConfig(LinearFitConfig):
    epochs: int = opt(100, "passes over the training images", ge=1)
    batch_size: int = opt(256, "images per optimisation step (feature extraction uses extract_batch_size)", ge=1)
    lr: float = opt(0.01, "peak learning rate; cosine decay to 0 over training", gt=0)
    resize: int = opt(256, "resize the shorter side to this many pixels before the centre crop (>= crop)")
    crop: int = opt(224, "side of the centre crop fed to the backbone", ge=32)
    extract_batch_size: int = opt(64, "images per frozen-backbone forward pass", ge=1)


def _validate(cfg: ClsProbeConfig) -> None:
    """The checks a key's declared bounds cannot express (run after them): levels, resize against crop."""
    validate_linear_fit(cfg)
    require(cfg.resize >= cfg.crop, "resize", f"must be >= crop ({cfg.crop}), got {cfg.resize}")


register_validator(ClsProbeConfig, _validate)


def _centre_crops(dataset: Any, cfg: ClsProbeConfig) -> Iterator[tuple[Tensor, int]]:
    """(uint8 resized + centre-cropped image, class index) per item."""
    for index in range(len(dataset)):
        image, label = dataset[index]
        image = TF.center_crop(TF.resize(image, [cfg.resize], antialias=True), [cfg.crop])
        yield image, int(label)


def pooled_features(backbone: nn.Module, dataset: Any, cfg: ClsProbeConfig, device: torch.device) -> FeatureBucket:
    """Globally average-pooled frozen features of every image as (N, C, 1, 1) maps, labels as (N, 1, 1)."""
    pooled: dict[str, list[Tensor]] = {level: [] for level in cfg.levels}
    labels: list[int] = []
    for feats, label in frozen_features(backbone, _centre_crops(dataset, cfg), list(cfg.levels),
                                        cfg.extract_batch_size, device):
        for level, f in feats.items():
            pooled[level].append(f.mean(dim=(1, 2), keepdim=True))
        labels.append(label)
    return FeatureBucket({lvl: torch.stack(fs).to(device) for lvl, fs in pooled.items()},
                         torch.tensor(labels, device=device).view(-1, 1, 1), (1, 1))


@torch.no_grad()
def topk_accuracy(logits: Tensor, targets: Tensor, k: int) -> float:
    """Fraction of samples whose target is among the ``k`` highest logits."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == targets.unsqueeze(1)).any(dim=1).float().mean())


def linear_probe_classification(backbone: nn.Module, train_ds: Any, val_ds: Any,
                                config: ClsProbeConfig | None = None) -> dict[str, Any]:
    """Train a linear classifier on pooled frozen features of ``train_ds``; report top-1 / top-5 on ``val_ds``.

    ``top5`` is None when there are fewer than 6 classes (it would be trivially 1).
    """
    cfg = typed_config(config, ClsProbeConfig, _validate)
    check_levels(backbone, cfg.levels)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise DataError(f"empty dataset: {len(train_ds)} training and {len(val_ds)} validation images")
    if list(val_ds.class_names) != list(train_ds.class_names):
        raise DataError("train and val sets have different class lists")
    device = select_device(cfg.device)
    start = time.perf_counter()
    with threads(cfg.threads):
        backbone.to(device)
        train = pooled_features(backbone, train_ds, cfg, device)
        val = pooled_features(backbone, val_ds, cfg, device)
        features_s = time.perf_counter() - start
        head = LinearProbeHead({lvl: backbone.channels[lvl] for lvl in cfg.levels}, train_ds.num_classes).to(device)
        with threads(1 if device.type == "cpu" else 0):
            loss = train_cached(head, [train], cfg, NO_IGNORE, 1)
        with torch.no_grad():
            logits = head.eval()(val.features)[:, :, 0, 0]
    targets = val.labels.view(-1)
    predicted = logits.argmax(dim=1)
    per_class = [float((predicted[targets == k] == k).float().mean()) if bool((targets == k).any()) else None
                 for k in range(train_ds.num_classes)]
    timing = {"features_s": features_s, "train_s": time.perf_counter() - start - features_s,
              "total_s": time.perf_counter() - start}
    result = {"top1": topk_accuracy(logits, targets, 1),
              "top5": topk_accuracy(logits, targets, 5) if train_ds.num_classes > 5 else None,
              "per_class_acc": per_class, "class_names": list(train_ds.class_names),
              "num_classes": train_ds.num_classes, "train_loss": loss, "levels": list(cfg.levels),
              "num_train": len(train_ds), "num_val": len(val_ds), "timing": timing}
    log.info("linear classification probe: top-1 %.4f (%.1f s)", result["top1"], timing["total_s"])
    return result
