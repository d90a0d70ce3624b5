"""Frozen linear probe for semantic segmentation: how linearly decodable are a backbone's dense features?

The backbone is frozen (eval mode); its features at the chosen levels (C5 by default) go through a
BatchNorm(affine=False) standardisation and a 1x1 conv classifier, whose logits are bilinearly upsampled to
label resolution and trained with cross-entropy (void ignored). Standardising makes random-init and trained
backbones comparable (their feature scales differ by orders of magnitude).

Without augmentation (the default) each image's features are computed once and cached, the standardisation
uses the exact mean / variance of the cached training features, the classifier starts from zeros and batches
come from a seeded generator, so a probe is deterministic and trains in seconds. Training uses every
``train_label_stride``-th label pixel (logits are sampled at exactly those pixels); evaluation is always at the
labels' full native resolution.

Usage::

    from pixelssl.evaluate.probe import ProbeConfig, linear_probe
    result = linear_probe(backbone, train_ds, val_ds, ProbeConfig(levels=["c4", "c5"]))
    print(result["miou"])
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pixelssl.config import opt, register_validator, require, sub
from pixelssl.data.loader import StepBatchSampler, steps_per_epoch
from pixelssl.engine.schedules import cosine
from pixelssl.errors import DataError
from pixelssl.evaluate.common import (
    check_compatible,
    check_label,
    class_names,
    eval_mode,
    item_name,
    select_device,
    threads,
    typed_config,
)
from pixelssl.evaluate.features import check_levels, frozen_features
from pixelssl.evaluate.metrics import ConfusionMatrix
from pixelssl.evaluate.transforms import JointAugmentConfig, JointAugmentDataset, validate_augment

log = logging.getLogger(__name__)


@dataclass
class LinearFitConfig:
    levels: list = opt(["c5"], "backbone levels fed to the probe (c2..c5); several are concatenated (after bilinear "
                               "resize to the finest one for dense probes)")
    epochs: int = opt(30, "passes over the training images", ge=1)
    batch_size: int = opt(32, "images per optimisation step and per feature-extraction batch", ge=1)
    optimizer: str = opt("adamw", "adamw | sgd (momentum 0.9)", choices=("adamw", "sgd"))
    lr: float = opt(0.05, "peak learning rate; cosine decay to 0 over training", gt=0)
    weight_decay: float = opt(1e-4, "weight decay of the classifier", ge=0)
    seed: int = opt(0, "seed of the batch order (and augmentation); the classifier starts from zeros")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads for feature extraction (0 = torch's default); on CPU the classifier "
                          "trains on one thread, its tensors being too small to gain from more", ge=0)


def validate_linear_fit(cfg: LinearFitConfig) -> None:
    """The check shared by the segmentation and classification probes that a declared bound cannot express (a
    list of level names; the keys' bounds are declared with them)."""
    require(len(cfg.levels) >= 1 and set(cfg.levels) <= {"c2", "c3", "c4", "c5"}, "levels",
            f"must be a non-empty list of c2, c3, c4, c5 (got {list(cfg.levels)})")


@dataclass
class ProbeConfig(LinearFitConfig):
    image_size: int = opt(0, "resize images so the shorter side has this many pixels (0 = native size); "
                             "metrics are always computed at the labels' native resolution", ge=32, also=(0,))
    train_label_stride: int = opt(4, "train on every N-th label pixel per axis (logits sampled at the same pixels); "
                                     "1 = full resolution", ge=1)
    augment: bool = opt(False, "random scale / crop / flip every step (no feature cache: much slower)")
    augmentation: JointAugmentConfig = sub(JointAugmentConfig, "joint image/label augmentation when augment=true")


def _validate(cfg: ProbeConfig) -> None:
    """The checks a key's declared bounds cannot express (run after them): levels, batch_size with augment, lists."""
    validate_linear_fit(cfg)
    require(cfg.batch_size >= 2 or not cfg.augment, "batch_size", "must be >= 2 with augment (BatchNorm)")
    validate_augment(cfg.augmentation, "augmentation")


register_validator(ProbeConfig, _validate)


# --------------------------------------------------------------------------- the probe head
class LinearProbeHead(nn.Module):
    """BatchNorm(affine=False) per level + one 1x1 conv over the levels concatenated at the finest resolution.

    Implemented as one 1x1 conv per level whose logits are bilinearly resized and summed: resizing (a convex
    combination of pixels) commutes with per-pixel affine maps, so this is the same linear map as concatenating
    resized features, without materialising them.
    """

    def __init__(self, channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.norms = nn.ModuleDict({lvl: nn.BatchNorm2d(c, affine=False, momentum=None) for lvl, c in channels.items()})
        self.classifiers = nn.ModuleDict(
            {lvl: nn.Conv2d(c, num_classes, 1, bias=(k == 0)) for k, (lvl, c) in enumerate(channels.items())}
        )
        for conv in self.classifiers.values():  # a convex problem: zeros are a fine, deterministic start
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """{level: (B, C, h, w)} -> (B, num_classes, h_f, w_f) logits at the finest level's resolution."""
        size = finest_size(features)
        logits = None
        for level, conv in self.classifiers.items():
            out = conv(self.norms[level](features[level]))
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            logits = out if logits is None else logits + out
        return logits

    def set_standardisation(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Fix each level's BatchNorm to the given (mean, variance) per channel."""
        for level, (mean, var) in stats.items():
            self.norms[level].running_mean.copy_(mean)
            self.norms[level].running_var.copy_(var)


def interpolation_rows(src: int, dst: int, stride: int = 1) -> Tensor:
    """(ceil(dst/stride), src): rows ``stride//2, stride//2 + stride, ...`` of the bilinear resize src -> dst.

    Multiplying by it equals ``F.interpolate(..., mode="bilinear", align_corners=False)`` followed by taking
    every ``stride``-th output pixel, at a fraction of the cost.
    """
    eye = torch.eye(src).unsqueeze(0)  # (1, src, src): channel c = indicator of source position c
    full = F.interpolate(eye, size=dst, mode="linear", align_corners=False)[0]  # (src, dst)
    return full[:, stride // 2::stride].T.contiguous()


def finest_size(features: dict[str, Tensor]) -> tuple[int, int]:
    """Spatial (h, w) of the largest feature map among the levels."""
    return max((tuple(f.shape[-2:]) for f in features.values()), key=lambda s: s[0] * s[1])


def _label_samplers(feature_size: tuple[int, int], label_size: tuple[int, int], stride: int,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    """Row and column interpolation matrices from a feature map to the stride-subsampled label pixels."""
    return (interpolation_rows(feature_size[0], label_size[0], stride).to(device),
            interpolation_rows(feature_size[1], label_size[1], stride).to(device))


def sampled_upsample(logits: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """(B, K, h, w) logits resized bilinearly and sampled at the pixels chosen by ``interpolation_rows``."""
    return torch.einsum("yh,bkhw,xw->bkyx", rows, logits, cols)


# --------------------------------------------------------------------------- cached features
@dataclass
class FeatureBucket:
    """Cached features of the images that share one (feature, label) shape."""

    features: dict[str, Tensor]  # level -> (N, C, h, w), float32 on the probe's device
    labels: Tensor  # (N, H', W') int32: native labels (val) or stride-subsampled ones (train)
    label_size: tuple[int, int]  # native (H, W) of the labels


def _segmentation_items(dataset: Any) -> Iterator[tuple[Tensor, tuple[int, Tensor]]]:
    """(uint8 image, (index, label)) per item, checking each label's values."""
    for index in range(len(dataset)):
        image, label = dataset[index]
        check_label(label, dataset.num_classes, dataset.ignore_index, item_name(dataset, index))
        yield image, (index, label)


def cache_features(backbone: nn.Module, dataset: Any, cfg: ProbeConfig, device: torch.device,
                   label_stride: int) -> list[FeatureBucket]:
    """Frozen features of every image, grouped by shape; labels kept every ``label_stride``-th pixel."""
    groups: dict[tuple, tuple[dict[str, list[Tensor]], list[Tensor]]] = {}
    offset = label_stride // 2
    for feats, (_, label) in frozen_features(backbone, _segmentation_items(dataset), list(cfg.levels),
                                             cfg.batch_size, device, cfg.image_size):
        key = tuple(tuple(f.shape) for f in feats.values()) + (tuple(label.shape),)
        level_lists, labels = groups.setdefault(key, ({lvl: [] for lvl in feats}, []))
        for level, f in feats.items():
            level_lists[level].append(f)
        labels.append(label[offset::label_stride, offset::label_stride].to(torch.int32))
    return [
        FeatureBucket({lvl: torch.stack(fs).to(device) for lvl, fs in level_lists.items()},
                      torch.stack(labels).to(device), key[-1])
        for key, (level_lists, labels) in groups.items()
    ]


def feature_statistics(buckets: list[FeatureBucket]) -> dict[str, tuple[Tensor, Tensor]]:
    """Exact per-channel (mean, population variance) of the cached features, every pixel weighted equally."""
    stats = {}
    for level in buckets[0].features:
        total = sum(b.features[level].double().sum(dim=(0, 2, 3)) for b in buckets)
        squares = sum(b.features[level].double().square().sum(dim=(0, 2, 3)) for b in buckets)
        count = sum(b.features[level][:, 0].numel() for b in buckets)
        mean = total / count
        stats[level] = (mean.float(), (squares / count - mean.square()).clamp(min=0).float())
    return stats


def _batch_plan(sizes: list[int], batch_size: int, generator: torch.Generator) -> list[tuple[int, Tensor]]:
    """(bucket, indices) per step of one epoch: shuffled within buckets, then the batches shuffled."""
    plan = [(b, chunk) for b, n in enumerate(sizes)
            for chunk in torch.randperm(n, generator=generator).split(batch_size)]
    return [plan[int(i)] for i in torch.randperm(len(plan), generator=generator)]


def _masked_cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """Mean cross-entropy over non-void pixels (0 when a batch holds only void)."""
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


def probe_optimizer(params: Any, cfg: LinearFitConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """The configured optimiser and a per-step cosine schedule to zero."""
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9,
                                                           weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine(min(step, total_steps), total_steps))
    return optimizer, schedule


def train_cached(head: LinearProbeHead, buckets: list[FeatureBucket], cfg: LinearFitConfig, ignore_index: int,
                 stride: int) -> float:
    """Fit the classifier on cached features (labels subsampled by ``stride``); returns the last epoch's mean loss.

    Image classification is the case of (1, 1) features and labels.
    """
    head.set_standardisation(feature_statistics(buckets))
    head.eval()  # the standardisation stays fixed
    samplers = [_label_samplers(finest_size(b.features), b.label_size, stride, b.labels.device) for b in buckets]
    generator = torch.Generator().manual_seed(cfg.seed)
    sizes = [b.labels.shape[0] for b in buckets]
    per_epoch = len(_batch_plan(sizes, cfg.batch_size, torch.Generator()))
    optimizer, schedule = probe_optimizer(head.classifiers.parameters(), cfg, cfg.epochs * per_epoch)
    epoch_loss = math.nan
    for _ in range(cfg.epochs):
        losses = []
        for b, index in _batch_plan(sizes, cfg.batch_size, generator):
            bucket = buckets[b]
            index = index.to(bucket.labels.device)
            logits = sampled_upsample(head({lvl: f[index] for lvl, f in bucket.features.items()}), *samplers[b])
            loss = _masked_cross_entropy(logits, bucket.labels[index].long(), ignore_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.detach())
        epoch_loss = float(torch.stack(losses).mean())
    return epoch_loss


def _train_augmented(head: LinearProbeHead, backbone: nn.Module, dataset: Any, cfg: ProbeConfig,
                     device: torch.device) -> float:
    """Fit the probe on freshly augmented crops each step (BatchNorm learns the standardisation on the way)."""
    per_epoch = steps_per_epoch(len(dataset), cfg.batch_size)
    if per_epoch < 1:
        raise DataError(f"the training set has {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * per_epoch
    loader = DataLoader(JointAugmentDataset(dataset, cfg.augmentation, cfg.image_size, cfg.seed),
                        batch_sampler=StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, 0, total))
    optimizer, schedule = probe_optimizer(head.classifiers.parameters(), cfg, total)
    stride, offset = cfg.train_label_stride, cfg.train_label_stride // 2
    samplers = None
    losses: list[Tensor] = []
    head.train()
    for images, labels in loader:
        with eval_mode(backbone), torch.no_grad():
            feats = backbone.forward_levels(images.to(device), tuple(cfg.levels))
        logits = head(feats)
        if samplers is None:  # every crop has the same size
            samplers = _label_samplers(finest_size(feats), tuple(labels.shape[-2:]), stride, device)
        target = labels[:, offset::stride, offset::stride].to(device)
        loss = _masked_cross_entropy(sampled_upsample(logits, *samplers), target, dataset.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
    return float(torch.stack(losses[-per_epoch:]).mean())


@torch.no_grad()
def evaluate_probe(head: LinearProbeHead, buckets: list[FeatureBucket], num_classes: int, ignore_index: int,
                   batch_size: int) -> dict[str, Any]:
    """Metrics of the probe on cached features, logits upsampled to the labels' full resolution."""
    head.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index)
    for bucket in buckets:
        for index in torch.arange(bucket.labels.shape[0], device=bucket.labels.device).split(batch_size):
            logits = head({lvl: f[index] for lvl, f in bucket.features.items()})
            logits = F.interpolate(logits, size=bucket.label_size, mode="bilinear", align_corners=False)
            matrix.update(logits.argmax(dim=1), bucket.labels[index].long())
    return matrix.compute()


def linear_probe(backbone: nn.Module, train_ds: Any, val_ds: Any, config: ProbeConfig | None = None) -> dict[str, Any]:
    """Train a linear probe on frozen features of ``train_ds`` and report segmentation metrics on ``val_ds``.

    Returns ``miou``, ``pixel_acc``, ``mean_acc``, ``per_class_iou`` / ``per_class_acc`` (NaN for classes absent
    from ground truth and prediction), ``class_names``, ``train_loss`` and ``timing`` (seconds per phase).
    """
    cfg = typed_config(config, ProbeConfig, _validate)
    check_levels(backbone, cfg.levels)
    check_compatible(train_ds, val_ds)
    device = select_device(cfg.device)
    start = time.perf_counter()
    with threads(cfg.threads):
        backbone.to(device)
        head = LinearProbeHead({lvl: backbone.channels[lvl] for lvl in cfg.levels}, train_ds.num_classes).to(device)
        timing: dict[str, float] = {}
        if cfg.augment:
            timing["features_s"] = 0.0
            loss = _train_augmented(head, backbone, train_ds, cfg, device)
            timing["train_s"] = time.perf_counter() - start
        else:
            train_buckets = cache_features(backbone, train_ds, cfg, device, cfg.train_label_stride)
            timing["features_s"] = time.perf_counter() - start
            with threads(1 if device.type == "cpu" else 0):  # tiny ops: threads cost more than they give
                loss = train_cached(head, train_buckets, cfg, train_ds.ignore_index, cfg.train_label_stride)
            timing["train_s"] = time.perf_counter() - start - timing["features_s"]
            del train_buckets
        mark = time.perf_counter()
        val_buckets = cache_features(backbone, val_ds, cfg, device, 1)
        metrics = evaluate_probe(head, val_buckets, val_ds.num_classes, val_ds.ignore_index, cfg.batch_size)
        timing["eval_s"] = time.perf_counter() - mark
    timing["total_s"] = time.perf_counter() - start
    log.info("linear probe: mIoU %.4f, pixel acc %.4f (%.1f s)", metrics["miou"], metrics["pixel_acc"],
             timing["total_s"])
    return {**metrics, "class_names": class_names(val_ds), "num_classes": val_ds.num_classes,
            "ignore_index": val_ds.ignore_index, "train_loss": loss, "levels": list(cfg.levels),
            "num_train": len(train_ds), "num_val": len(val_ds), "timing": timing}
