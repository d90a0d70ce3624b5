"""Detection fine-tuning from a (pre-trained) backbone: torchvision FCOS / Faster R-CNN / Mask R-CNN on COCO data.

The transfer protocol of the PixPro / MoCo papers, scaled to what a user has: the detector (R-FPN, built in
``detection_models``) is trained with SGD + momentum, linear warm-up and a step (x0.1 at 2/3 and 8/9 of the run,
as the 1x schedule) or cosine learning rate on horizontally flipped COCO-format images, then scored with
pycocotools (box AP, plus mask AP for Mask R-CNN) on a validation set. Batches depend only on (seed, step).

Usage::

    from pixelssl.data.coco import CocoDetection
    from pixelssl.evaluate.detection import DetectionConfig, finetune_detection
    train = CocoDetection("data/train.json", "data/images")
    val = CocoDetection("data/val.json", "data/images")
    result = finetune_detection(backbone, train, val, DetectionConfig(model="fcos", min_size=160, max_size=160))
    print(result["bbox"]["AP"])
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from pixelssl.config import opt, register_validator, require
from pixelssl.data.loader import sample_seed
from pixelssl.dist import all_gather_objects, rank_world
from pixelssl.engine.distributed import shard_batches, shard_indices, wrap_for_finetuning
from pixelssl.engine.schedules import set_lr, warmup_multistep
from pixelssl.errors import DataError, PixelSSLError, TrainingDiverged
from pixelssl.evaluate.coco_eval import coco_metrics, predict_coco
from pixelssl.evaluate.common import FinetuneRuntimeConfig, LossLog, bf16_autocast, select_device, threads, typed_config
from pixelssl.evaluate.detection_models import (
    DEFAULT_FPN_CHANNELS,
    MODELS,
    NORMS,
    build_detector,
    fpn_state_width,
    load_fpn_state,
)
from pixelssl.io import save_weights
from pixelssl.models.backbones import Backbone, build_backbone

log = logging.getLogger(__name__)

MODEL_KEYS = ("model", "norm", "trainable_layers", "min_size", "max_size", "anchor_sizes", "score_thresh",
              "detections_per_image", "roi_batch_size")


@dataclass
class DetectionConfig(FinetuneRuntimeConfig):
    model: str = opt("fcos", "torchvision detector on the backbone (R-FPN)", choices=MODELS)
    norm: str = opt("frozen", "backbone norm layers: frozen (FrozenBN: pre-trained statistics and affine kept) | "
                              "sync (SyncBatchNorm when distributed, else BatchNorm) | bn (BatchNorm per process)",
                    choices=NORMS)
    trainable_layers: int = opt(3, "backbone stages trained, from the top (3 = layer2-4, 5 = all incl. the stem); "
                                   "the others are frozen, with FrozenBN", ge=0, le=5)
    fpn_channels: int = opt(0, "FPN width (0 = the width of a loaded fpn.safetensors, else 256)", ge=0)
    fpn_init: bool = opt(True, "load <run>/fpn.safetensors into the detector's FPN when the backbone run has one")
    min_size: int = opt(800, "images are resized so the shorter side is min_size (<= max_size) ...", ge=32)
    max_size: int = opt(1333, "... and the longer side at most max_size (torchvision's transform)")
    anchor_sizes: list = opt([], "one anchor size in px per FPN level, 5 values (empty = torchvision's: 32-512 for "
                                 "the R-CNN RPN, 8-128 for FCOS)")
    score_thresh: float = opt(0.05, "detections below this score are dropped before evaluation", ge=0, lt=1)
    detections_per_image: int = opt(100, "detections kept per image (COCO evaluates the top 100)", ge=1)
    roi_batch_size: int = opt(512, "Faster / Mask R-CNN: RoIs sampled per image for the box head (torchvision's "
                                   "512; 128 is plenty for a few objects per image and several times cheaper)", ge=1)
    steps: int = opt(2000, "optimiser steps", ge=1)
    batch_size: int = opt(8, "images per step, over all processes when distributed (norm=sync or bn: >= 2)", ge=1)
    lr: float = opt(0.01, "peak learning rate (the 1x schedule uses 0.02 at batch 16)", gt=0)
    momentum: float = opt(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = opt(1e-4, "weight decay", ge=0)
    schedule: str = opt("step", "step (x0.1 at each of lr_milestones) | cosine (to 0 at the last step)",
                        choices=("step", "cosine"))
    lr_milestones: list = opt([0.667, 0.889], "step schedule: fractions of steps where lr drops 10x (1x: 60k, 80k "
                                              "of 90k)")
    warmup_steps: int = opt(100, "linear warm-up steps from warmup_factor x lr (fewer than steps)", ge=0)
    warmup_factor: float = opt(0.001, "lr multiplier at step 0 of the warm-up", gt=0, le=1)
    clip_grad_norm: float = opt(0.0, "clip the gradient norm to this value (0 = off)", ge=0)
    hflip: float = opt(0.5, "probability of flipping a training image horizontally", ge=0, le=1)
    eval_batch_size: int = opt(4, "images per inference batch", ge=1)
    seed: int = opt(0, "seed of head initialisation, batch order and flips")


def _validate(cfg: DetectionConfig) -> None:
    """The checks a key's declared bounds cannot express (run after them): bounds set by another key, lists."""
    require(cfg.min_size <= cfg.max_size, "min_size", f"must be <= max_size ({cfg.max_size}) (got {cfg.min_size})")
    require(cfg.warmup_steps < cfg.steps, "warmup_steps", f"must be < steps ({cfg.steps}) (got {cfg.warmup_steps})")
    require(cfg.norm == "frozen" or cfg.batch_size >= 2, "batch_size",
            f"norm={cfg.norm} needs >= 2 images per step for batch statistics")
    require(len(cfg.anchor_sizes) in (0, 5) and all(int(s) >= 1 for s in cfg.anchor_sizes), "anchor_sizes",
            f"must be empty or 5 sizes >= 1, one per FPN level (got {list(cfg.anchor_sizes)})")
    require(all(0 < m < 1 for m in cfg.lr_milestones), "lr_milestones",
            f"fractions must be in (0, 1) (got {list(cfg.lr_milestones)})")


register_validator(DetectionConfig, _validate)


# --------------------------------------------------------------------------- data
def hflip(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mirror an image (3, H, W) and its boxes (xyxy) and masks left-right."""
    width = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = width - target["boxes"][:, 2], width - target["boxes"][:, 0]
    flipped = {**target, "boxes": boxes}
    if "masks" in target:
        flipped["masks"] = target["masks"].flip(-1)
    return image.flip(-1), flipped


class FlipDataset(Dataset):
    """Item ``(epoch, index)`` -> the sample, flipped with probability ``p`` (reproducible per seed, epoch, index)."""

    def __init__(self, dataset: Any, p: float, seed: int) -> None:
        self.dataset, self.p, self.seed = dataset, p, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, dict[str, Tensor]]:
        epoch, index = item
        image, target = self.dataset[index]
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, 4))
        if float(torch.rand((), generator=generator)) < self.p:
            return hflip(image, target)
        return image, target


def _collate(batch: list) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)


def _train_loader(train_ds: Any, cfg: Any) -> DataLoader:
    sampler = shard_batches(len(train_ds), cfg.batch_size, cfg.seed, cfg.steps, key="batch_size")
    return DataLoader(FlipDataset(train_ds, cfg.hflip, cfg.seed), batch_sampler=sampler, collate_fn=_collate,
                      num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)


# --------------------------------------------------------------------------- the protocol
def evaluate_detection(model: nn.Module, dataset: Any, cfg: Any, device: torch.device) -> dict[str, Any]:
    """pycocotools box (and mask) metrics of ``model`` on a ``CocoDetection`` set (split over processes)."""
    with bf16_autocast(cfg.amp, device):
        boxes, masks = predict_coco(model, dataset, device, cfg.eval_batch_size, shard_indices(len(dataset)))
    gathered = all_gather_objects((boxes, masks))
    boxes = [r for part in gathered for r in part[0]]
    masks = [r for part in gathered for r in part[1]]
    metrics = {"bbox": coco_metrics(dataset.coco, boxes, "bbox")}
    if cfg.model == "mask_rcnn":
        metrics["segm"] = coco_metrics(dataset.coco, masks, "segm")
    return metrics


def finetune_detection(backbone: Backbone, train_ds: Any, val_ds: Any, config: DetectionConfig | None = None, *,
                       fpn_state: dict[str, Tensor] | None = None, fpn_source: str = "",
                       checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune a detector initialised from (a copy of) ``backbone`` on ``train_ds``; COCO metrics on ``val_ds``.

    ``fpn_state`` (FCOS ``backbone.fpn`` key names, e.g. from ``<run>/fpn.safetensors``) initialises the FPN when
    ``fpn_init`` is on. Returns ``bbox`` (and ``segm``) metrics, ``train_loss`` ([step, mean loss] every
    ``log_every`` steps), ``fpn_init`` (what was loaded), sizes and ``timing``; with ``checkpoint`` the
    fine-tuned detector is written there (``save_detector``).
    """
    cfg = typed_config(config, DetectionConfig, _validate)
    if train_ds.category_ids != val_ds.category_ids:
        raise DataError(f"train and val sets have different categories: ids {train_ds.category_ids} vs "
                        f"{val_ds.category_ids}")
    if cfg.model == "mask_rcnn" and not (train_ds.masks and val_ds.masks):
        raise PixelSSLError("mask_rcnn needs datasets read with masks=True")
    use_fpn = fpn_state is not None and cfg.fpn_init
    width = cfg.fpn_channels or (fpn_state_width(fpn_state) if use_fpn else DEFAULT_FPN_CHANNELS)
    device = select_device(cfg.device)
    rank, _ = rank_world()
    start = time.perf_counter()
    with threads(cfg.threads), torch.random.fork_rng(devices=[]):  # leave the caller's CPU RNG as it was
        torch.manual_seed(cfg.seed)  # head and FPN initialisation
        model = build_detector(copy.deepcopy(backbone), train_ds.num_classes, cfg, width)
        fpn_summary = None
        if use_fpn:
            fpn_summary = {"source": fpn_source, **load_fpn_state(model, fpn_state, cfg.model, fpn_source or "FPN state")}
            log.info("FPN initialised from %s: %d tensors loaded, %d skipped", fpn_source or "the given state",
                     len(fpn_summary["loaded"]), len(fpn_summary["skipped"]))
        model.to(device)
        trained = wrap_for_finetuning(model, device, cfg.norm == "sync")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        loss_log = LossLog(cfg.log_every, cfg.steps, "finetune-det")
        trained.train()
        for step, (images, targets) in enumerate(_train_loader(train_ds, cfg)):
            set_lr(optimizer, cfg.lr * warmup_multistep(step, cfg.steps, cfg.lr_milestones, cfg.warmup_steps,
                                                        cfg.warmup_factor, cfg.schedule))
            images = [image.to(device) for image in images]
            targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
            with bf16_autocast(cfg.amp, device):
                losses = trained(images, targets)
            loss = sum(value.float() for value in losses.values())
            if not torch.isfinite(loss):
                parts = ", ".join(f"{key} {float(value):.4g}" for key, value in losses.items())
                raise TrainingDiverged(f"detection fine-tuning: non-finite loss at step {step + 1} ({parts}); "
                                       f"try a lower lr, more warmup_steps or clip_grad_norm")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            optimizer.step()
            loss_log.add(step, loss)
        train_s = time.perf_counter() - start
        metrics = evaluate_detection(model, val_ds, cfg, device)
    if checkpoint is not None and rank == 0:
        save_detector(model, checkpoint, cfg, backbone.name, width, val_ds.class_names, val_ds.category_ids)
    timing = {"train_s": train_s, "eval_s": time.perf_counter() - start - train_s,
              "total_s": time.perf_counter() - start}
    log.info("fine-tuned %s: box AP %.4f%s (%.1f s)", cfg.model, metrics["bbox"]["AP"],
             f", mask AP {metrics['segm']['AP']:.4f}" if "segm" in metrics else "", timing["total_s"])
    return {**metrics, "class_names": val_ds.class_names, "category_ids": val_ds.category_ids,
            "fpn_channels": width, "fpn_init": fpn_summary, "train_loss": loss_log.history, "num_train": len(train_ds),
            "num_train_instances": train_ds.num_instances(), "num_val": len(val_ds), "timing": timing}


# --------------------------------------------------------------------------- checkpoint
def save_detector(model: nn.Module, path: str | Path, cfg: Any, arch: str, fpn_channels: int, names: list[str],
                  category_ids: list[int]) -> None:
    """Weights as safetensors (written atomically) with what ``load_detector`` needs in its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pixelssl-detection", "backbone": arch, "fpn_channels": fpn_channels,
            "class_names": names, "category_ids": category_ids,
            **{key: (list(getattr(cfg, key)) if key == "anchor_sizes" else getattr(cfg, key)) for key in MODEL_KEYS}}
    save_weights(model.state_dict(), path, metadata={"pixelssl": json.dumps(meta)})


def load_detector(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a detector saved by ``save_detector``; returns it in eval mode with its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PixelSSLError(f"detection checkpoint '{path}' does not exist")
    with safe_open(str(path), "pt") as handle:
        raw = (handle.metadata() or {}).get("pixelssl")
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != "pixelssl-detection":
        raise PixelSSLError(f"'{path}' is not a pixelssl detection checkpoint")
    cfg = typed_config(DetectionConfig(**{key: meta[key] for key in MODEL_KEYS}), DetectionConfig, _validate)
    model = build_detector(build_backbone(meta["backbone"]), len(meta["class_names"]), cfg, meta["fpn_channels"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
