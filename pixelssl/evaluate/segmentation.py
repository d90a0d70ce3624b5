"""Semantic-segmentation fine-tuning from a (pre-trained) backbone: FCN and Semantic-FPN heads.

The protocol of the PixPro / MoCo papers (Cityscapes / VOC, mmsegmentation-style), scaled down: the whole network
is trained with SGD + poly (or cosine) learning rate on random scale / crop / flip crops (label resized with
nearest), then evaluated with whole-image or sliding-window inference at the labels' native resolution.
BatchNorm is synchronised over the processes when distributed (``torchrun``, ``sync_bn``); on CPU everything runs fp32.

Usage::

    from pixelssl.evaluate.segmentation import FinetuneConfig, finetune_segmentation
    result = finetune_segmentation(backbone, train_ds, val_ds, FinetuneConfig(head="fpn", steps=2000))
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from pixelssl.config import opt, register_validator, require, sub
from pixelssl.data.loader import sample_seed
from pixelssl.dist import rank_world
from pixelssl.engine.distributed import shard_batches, shard_indices, wrap_for_finetuning
from pixelssl.engine.schedules import scale_lr, warmup_decay
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.common import (
    FinetuneRuntimeConfig,
    LossLog,
    bf16_autocast,
    check_compatible,
    check_label,
    class_names,
    item_name,
    select_device,
    threads,
    typed_config,
)
from pixelssl.evaluate.features import same_shape_batches
from pixelssl.evaluate.metrics import ConfusionMatrix
from pixelssl.evaluate.transforms import JointAugmentConfig, JointAugmentDataset, prepare_image, validate_augment
from pixelssl.io import save_weights
from pixelssl.models.backbones import Backbone, ResNetBackbone, build_backbone

log = logging.getLogger(__name__)

HEADS = ("fcn", "fpn")
MODEL_KEYS = ("head", "head_channels", "fpn_scale_channels", "fcn_convs", "output_stride", "dropout")


@dataclass
class FinetuneConfig(FinetuneRuntimeConfig):
    head: str = opt("fpn", "fcn (FCN on C5) | fpn (Semantic FPN on C2-C5)", choices=HEADS)
    head_channels: int = opt(256, "width of the FCN convs / the FPN lateral and output convs", ge=1)
    fpn_scale_channels: int = opt(128, "fpn: width of the per-level upsampling branches", ge=1)
    fcn_convs: int = opt(2, "fcn: 3x3 conv-BN-ReLU layers before the input-concat conv", ge=0)
    output_stride: int = opt(32, "ResNet output stride: 32 (plain), 16 or 8 (dilated last stages, as FCN in the "
                                 "papers; much slower)", choices=(8, 16, 32))
    dropout: float = opt(0.1, "dropout before the classifier", ge=0, lt=1)
    steps: int = opt(2000, "optimiser steps", ge=1)
    batch_size: int = opt(8, "images per step, over all processes when distributed (BatchNorm needs >= 2)", ge=2)
    optimizer: str = opt("sgd", "sgd (momentum 0.9) | adamw", choices=("sgd", "adamw"))
    lr: float = opt(0.01, "peak learning rate", gt=0)
    backbone_lr_mult: float = opt(1.0, "learning-rate multiplier of the backbone (the head gets lr)", ge=0)
    weight_decay: float = opt(5e-4, "weight decay", ge=0)
    schedule: str = opt("poly", "poly (power 0.9) | cosine; both decay to 0 at the last step", choices=("poly", "cosine"))
    warmup_steps: int = opt(0, "linear warm-up steps from 0 (fewer than steps)", ge=0)
    image_size: int = opt(0, "resize images so the shorter side has this many pixels before augmentation and "
                             "inference (0 = native); metrics are always at the labels' native resolution",
                          ge=32, also=(0,))
    augmentation: JointAugmentConfig = sub(JointAugmentConfig, "random scale / crop / flip of the training pairs")
    inference: str = opt("whole", "whole (one pass per image) | slide (windows of augmentation.crop_size)",
                         choices=("whole", "slide"))
    slide_stride: list = opt([171, 171], "slide inference: window step [height, width] in pixels")
    sync_bn: bool = opt(True, "synchronise BatchNorm over processes when distributed (SyncBatchNorm on GPUs, gloo on CPU)")
    eval_every: int = opt(0, "steps between validations during training (0 = only at the end)", ge=0)
    seed: int = opt(0, "seed of head initialisation, batch order and augmentation")


def _validate(cfg: FinetuneConfig) -> None:
    """The checks a key's declared bounds cannot express (run after them): a bound set by another key, lists."""
    require(cfg.warmup_steps < cfg.steps, "warmup_steps", f"must be < steps ({cfg.steps}) (got {cfg.warmup_steps})")
    validate_augment(cfg.augmentation, "augmentation")
    require(len(cfg.slide_stride) == 2 and min(cfg.slide_stride) >= 1, "slide_stride",
            f"must be [height, width] with both >= 1 (got {list(cfg.slide_stride)})")


register_validator(FinetuneConfig, _validate)


# --------------------------------------------------------------------------- model
def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class FCNHead(nn.Module):
    """FCN head (Long et al. 2015, in mmsegmentation's form): 3x3 convs on C5, concat with C5, 3x3 conv, classifier."""

    levels = ("c5",)

    def __init__(self, in_channels: int, channels: int, num_classes: int, num_convs: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[conv_bn_relu(in_channels if k == 0 else channels, channels)
                                     for k in range(num_convs)])
        self.fuse = conv_bn_relu(in_channels + (channels if num_convs else 0), channels)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        x = features["c5"]
        y = self.convs(x)
        return self.classifier(self.fuse(torch.cat([x, y], dim=1) if len(self.convs) else x))


class SemanticFPNHead(nn.Module):
    """Semantic FPN (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks", sec. 3).

    FPN over C2-C5 (1x1 laterals, nearest top-down sum, 3x3 outputs); each level is brought to stride 4 by
    conv3x3-BN-ReLU + 2x bilinear stages (one per halving), the branches are summed and classified.
    """

    levels = ("c2", "c3", "c4", "c5")

    def __init__(self, in_channels: dict[str, int], strides: dict[str, int], fpn_channels: int,
                 scale_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.lateral = nn.ModuleDict({lvl: nn.Conv2d(in_channels[lvl], fpn_channels, 1) for lvl in self.levels})
        self.output = nn.ModuleDict({lvl: nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for lvl in self.levels})
        finest = strides[self.levels[0]]
        branches = {}
        for lvl in self.levels:
            halvings = max(0, round(math.log2(strides[lvl] / finest)))
            stages: list[nn.Module] = []
            for k in range(max(1, halvings)):
                stages.append(conv_bn_relu(fpn_channels if k == 0 else scale_channels, scale_channels))
                if halvings:
                    stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            branches[lvl] = nn.Sequential(*stages)
        self.branches = nn.ModuleDict(branches)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(scale_channels, num_classes, 1))

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        laterals = {lvl: self.lateral[lvl](features[lvl]) for lvl in self.levels}
        for fine, coarse in zip(self.levels[-2::-1], self.levels[:0:-1], strict=True):  # c4 <- c5, c3 <- c4, c2 <- c3
            laterals[fine] = laterals[fine] + F.interpolate(laterals[coarse], size=laterals[fine].shape[-2:],
                                                            mode="nearest")
        size = laterals[self.levels[0]].shape[-2:]
        fused = None
        for lvl in self.levels:
            out = self.branches[lvl](self.output[lvl](laterals[lvl]))
            if out.shape[-2:] != size:  # odd input sizes: the 2x stages may miss by a pixel
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            fused = out if fused is None else fused + out
        return self.classifier(fused)


class SegmentationModel(nn.Module):
    """Backbone + head; ``forward(x)`` returns logits bilinearly upsampled to the input's resolution."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self.backbone.forward_levels(x, tuple(self.head.levels)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def dilate_resnet(backbone: Backbone, output_stride: int) -> None:
    """Replace the stride of layer4 (16) or layer3 + layer4 (8) by dilation, as torchvision's
    ``replace_stride_with_dilation``; updates ``backbone.strides``."""
    if output_stride == 32:
        return
    if not isinstance(backbone, ResNetBackbone):
        raise PixelSSLError(f"output_stride={output_stride} needs a ResNet backbone (got {type(backbone).__name__})")
    layers = [("c4", "layer3"), ("c5", "layer4")][(1 if output_stride == 16 else 0):]
    dilation = 1
    for level, name in layers:
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(getattr(backbone, name)):
            for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
                if conv.kernel_size == (3, 3):
                    d = previous if index == 0 else dilation
                    conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
                elif conv.stride == (2, 2):  # the 1x1 downsample shortcut
                    conv.stride = (1, 1)
        backbone.strides[level] = output_stride


def build_segmentation_model(backbone: Backbone, num_classes: int, cfg: Any) -> SegmentationModel:
    """A SegmentationModel around ``backbone`` (modified in place for output_stride) with the configured head."""
    dilate_resnet(backbone, cfg.output_stride)
    if cfg.head == "fcn":
        head: nn.Module = FCNHead(backbone.channels["c5"], cfg.head_channels, num_classes, cfg.fcn_convs, cfg.dropout)
    else:
        head = SemanticFPNHead(backbone.channels, backbone.strides, cfg.head_channels, cfg.fpn_scale_channels,
                               num_classes, cfg.dropout)
    return SegmentationModel(backbone, head)


# --------------------------------------------------------------------------- inference
def slide_inference(model: nn.Module, images: Tensor, window: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """Average of the logits of overlapping windows (clipped to the image, as mmsegmentation's ``slide_inference``)."""
    height, width = images.shape[-2:]
    win_h, win_w = min(window[0], height), min(window[1], width)
    rows = max(height - win_h + stride[0] - 1, 0) // stride[0] + 1
    cols = max(width - win_w + stride[1] - 1, 0) // stride[1] + 1
    total = count = None
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * stride[0], height - win_h), min(c * stride[1], width - win_w)
            logits = model(images[..., y1:y1 + win_h, x1:x1 + win_w])
            if total is None:
                total = logits.new_zeros(*logits.shape[:2], height, width)
                count = logits.new_zeros(1, 1, height, width)
            total[..., y1:y1 + win_h, x1:x1 + win_w] += logits
            count[..., y1:y1 + win_h, x1:x1 + win_w] += 1
    return total / count


def predict(model: nn.Module, images: Tensor, cfg: Any) -> Tensor:
    """(B, K, h, w) logits of prepared images with the configured whole / slide inference."""
    if cfg.inference == "slide":
        window = tuple(int(v) for v in cfg.augmentation.crop_size)
        return slide_inference(model, images, window, tuple(int(v) for v in cfg.slide_stride))
    return model(images)


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, dataset: Any, cfg: Any, device: torch.device) -> dict[str, Any]:
    """Metrics over ``dataset`` at native label resolution (shared between processes when distributed)."""
    _, world = rank_world()
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)

    def items() -> Iterator[tuple[Tensor, Tensor]]:
        for index in shard_indices(len(dataset)):
            image, label = dataset[index]
            check_label(label, dataset.num_classes, dataset.ignore_index, item_name(dataset, index))
            yield image, label

    for batch, labels in same_shape_batches(items(), max(1, cfg.batch_size // world)):
        images = prepare_image(batch.to(device), cfg.image_size).contiguous(memory_format=torch.channels_last)
        with bf16_autocast(cfg.amp, device):
            logits = predict(model, images, cfg).float()
        target = torch.stack(labels).to(device)
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        matrix.update(logits.argmax(dim=1), target)
    matrix.all_reduce()
    model.train(was_training)
    return matrix.compute()


# --------------------------------------------------------------------------- training
def _optimizer(model: SegmentationModel, cfg: Any) -> torch.optim.Optimizer:
    """SGD or AdamW with the backbone's lr scaled by ``backbone_lr_mult``."""
    groups = [{"params": list(model.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_mult},
              {"params": list(model.head.parameters()), "lr": cfg.lr}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _train_loader(train_ds: Any, cfg: Any) -> DataLoader:
    """Augmented (image, label) batches for every step: reproducible per (seed, epoch, index), sharded by rank."""
    sampler = shard_batches(len(train_ds), cfg.batch_size, cfg.seed, cfg.steps, key="batch_size")
    dataset = JointAugmentDataset(train_ds, cfg.augmentation, cfg.image_size, cfg.seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                      persistent_workers=cfg.num_workers > 0,
                      worker_init_fn=_single_threaded_worker if cfg.num_workers > 0 else None)


def _single_threaded_worker(_: int) -> None:
    """Loader workers must not compete with the training threads."""
    torch.set_num_threads(1)


def finetune_segmentation(backbone: Backbone, train_ds: Any, val_ds: Any, config: FinetuneConfig | None = None, *,
                          checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune a segmentation model initialised from (a copy of) ``backbone`` and report val metrics.

    Returns the metrics of ``metrics.metrics_from_confusion`` plus ``class_names``, ``train_loss`` ([step, mean
    loss] every ``log_every`` steps), ``val_history`` (metrics every ``eval_every`` steps) and ``timing``.
    With ``checkpoint``, the fine-tuned model is written there (see ``save_segmentation_model``).
    """
    cfg = typed_config(config, FinetuneConfig, _validate)
    check_compatible(train_ds, val_ds)
    device = select_device(cfg.device)
    rank, _ = rank_world()
    start = time.perf_counter()
    with threads(cfg.threads):
        with torch.random.fork_rng(devices=[]):  # leave the caller's CPU RNG as it was
            torch.manual_seed(cfg.seed)  # head initialisation and dropout
            model = build_segmentation_model(copy.deepcopy(backbone), train_ds.num_classes, cfg).to(device)
            model = model.to(memory_format=torch.channels_last)
            trained = wrap_for_finetuning(model, device, cfg.sync_bn)
            if rank:  # every process drew the same head weights; each draws its own dropout masks
                torch.manual_seed(sample_seed(cfg.seed, 0, rank, stream=7))
            optimizer = _optimizer(model, cfg)
            base_lrs = [group["lr"] for group in optimizer.param_groups]
            loss_log = LossLog(cfg.log_every, cfg.steps, "finetune")
            val_history: list[dict[str, Any]] = []
            trained.train()
            for step, (images, labels) in enumerate(_train_loader(train_ds, cfg)):
                scale_lr(optimizer, base_lrs, warmup_decay(step, cfg.steps, cfg.warmup_steps, cfg.schedule))
                images = images.to(device).contiguous(memory_format=torch.channels_last)
                with bf16_autocast(cfg.amp, device):
                    logits = trained(images)
                loss = F.cross_entropy(logits.float(), labels.to(device), ignore_index=train_ds.ignore_index)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_log.add(step, loss)
                if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                    val_history.append({"step": step + 1, **evaluate_segmentation(model, val_ds, cfg, device)})
                    trained.train()
            train_s = time.perf_counter() - start
            metrics = evaluate_segmentation(model, val_ds, cfg, device)
    if checkpoint is not None and rank == 0:
        save_segmentation_model(model, checkpoint, cfg, class_names(val_ds))
    timing = {"train_s": train_s, "eval_s": time.perf_counter() - start - train_s,
              "total_s": time.perf_counter() - start}
    log.info("fine-tuned segmentation: mIoU %.4f, pixel acc %.4f (%.1f s)", metrics["miou"], metrics["pixel_acc"],
             timing["total_s"])
    return {**metrics, "class_names": class_names(val_ds), "num_classes": val_ds.num_classes,
            "ignore_index": val_ds.ignore_index, "train_loss": loss_log.history, "val_history": val_history,
            "num_train": len(train_ds), "num_val": len(val_ds), "timing": timing}


# --------------------------------------------------------------------------- checkpoint
def save_segmentation_model(model: SegmentationModel, path: str | Path, cfg: Any, names: list[str]) -> None:
    """Weights as safetensors (written atomically) with what ``load_segmentation_model`` needs in its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pixelssl-segmentation", "backbone": str(getattr(model.backbone, "name", "")),
            "class_names": names, **{key: getattr(cfg, key) for key in MODEL_KEYS}}
    save_weights(model.state_dict(), path, metadata={"pixelssl": json.dumps(meta)})


def load_segmentation_model(path: str | Path) -> tuple[SegmentationModel, dict[str, Any]]:
    """Rebuild a fine-tuned model saved by ``save_segmentation_model``; returns it (eval mode) and its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PixelSSLError(f"segmentation checkpoint '{path}' does not exist")
    with safe_open(str(path), "pt") as handle:
        raw = (handle.metadata() or {}).get("pixelssl")
    if raw is None:
        raise PixelSSLError(f"'{path}' is not a pixelssl segmentation checkpoint (no metadata)")
    meta = json.loads(raw)
    cfg = FinetuneConfig(**{key: meta[key] for key in MODEL_KEYS})
    model = build_segmentation_model(build_backbone(meta["backbone"]), len(meta["class_names"]), cfg)
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
