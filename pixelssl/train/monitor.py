"""Live monitors during pre-training (``train.monitor_every``): do the features improve, or are they collapsing?

Every ``train.monitor_every`` steps (and at the last step) rank 0 measures the model in eval mode and writes
``monitor/*`` keys to metrics.jsonl and TensorBoard:

- **collapse indicators** on a fixed batch of views (view 1 of the first ``train.monitor_images`` training images,
  crops drawn once with a fixed seed), read at the method's dense projection (PixPro's / PixContrast's
  ``projector``, DenseCL's / PixCon's ``dense_projector``); a method without one (MoCo) is read at backbone C5 and
  its keys say so (``monitor/c5_cos_across_images``, ...):

  - ``cos_within_image``: mean cosine between the cells of one image (pairs of distinct cells);
  - ``cos_across_images``: mean cosine between cells of different images;
  - ``feature_std``: SimSiam's indicator, the std over all cells of each channel of the L2-normalised features,
    averaged over channels (Chen & He 2021, sec. 4.1): 0 when collapsed, about 1/sqrt(D) when the features
    spread over the unit sphere;
  - ``effective_rank``: of the C5 cells (rows) of the batch, ``exp(entropy(s / sum(s)))`` of the singular values
    ``s`` (Roy & Vetterli 2007); 1 for identical cells, at most min(cells, channels).

- **quality**: ``monitor/probe_miou``, the frozen linear probe of ``pixelssl.evaluate.probe`` on C5, trained on
  ``train.monitor_images`` labelled images and scored on as many held-out ones (``train.monitor_data``, or the
  built-in synthetic scenes), at ``train.monitor_image_size``. Deterministic: classifier from zeros, seeded
  batches; only the labelled images are kept between calls, never features.

A WARNING is logged when an indicator crosses a threshold (once per crossing, again only after it recovered):

- ``cos_across_images > 0.95`` (COLLAPSE_COS): every image maps to about the same direction;
- ``feature_std < 0.1 / sqrt(D)`` (COLLAPSE_STD): a tenth of the healthy spread of D-dim unit vectors;
- ``effective_rank < 2`` (COLLAPSE_RANK): the C5 cells span about one direction.

The cosine threshold is applied to the dense projection only: ReLU features (C5, MoCo's fallback) are non-negative,
so their cosines sit well above 0 even when healthy (0.67 across images at random initialisation of the demo's
ResNet-18) and 0.95 was not calibrated for them; the std and rank thresholds apply to every method.

A monitor changes nothing in training: modules run in eval mode with their train/eval flags restored (BatchNorm
statistics untouched), features under ``torch.no_grad()`` (only the probe's own classifier has gradients), and every
RNG state (torch, CUDA, numpy, python) is restored afterwards, so a run ends bit-identical with monitors on or off.
A monitor that fails logs one warning and is switched off for the rest of the run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import ConfigError
from pixelssl.data.augment import normalize
from pixelssl.data.views import TwoViewSampler
from pixelssl.engine.runtime import capture_rng, restore_rng
from pixelssl.errors import DataError
from pixelssl.evaluate.common import eval_mode, threads
from pixelssl.evaluate.probe import LinearProbeHead, ProbeConfig, cache_features, evaluate_probe, train_cached
from pixelssl.evaluate.transforms import resize_image, resize_label, scaled_size
from pixelssl.models.heads import ConvMLP

log = logging.getLogger(__name__)

COLLAPSE_COS = 0.95  # cos_across_images above this: collapsed
COLLAPSE_STD = 0.1  # feature_std below COLLAPSE_STD / sqrt(D): collapsed
COLLAPSE_RANK = 2.0  # effective_rank below this: collapsed
VIEW_SEED = 4321  # the fixed crops of the collapse batch
PROBE_EPOCHS = 30  # linear-probe passes over the labelled images (full batch: one step each)


# ------------------------------------------------------------------------------------------------ indicators
def cosine_within_and_across(features: Tensor) -> tuple[float, float]:
    """Mean cosine of (B, D, h, w) features between distinct cells of one image, and between cells of different
    images (exact, from sums of unit vectors: ``sum_ij z_i . z_j = |sum_i z_i|^2``)."""
    b, _, h, w = features.shape
    n = h * w
    z = F.normalize(features.double().flatten(2), dim=1)  # (B, D, n)
    per_image = z.sum(dim=2)  # (B, D)
    same = per_image.square().sum()  # pairs within images, self-pairs included
    within = (same - b * n) / (b * n * (n - 1)) if n > 1 else torch.tensor(math.nan)
    across = (per_image.sum(dim=0).square().sum() - same) / (b * (b - 1) * n * n) if b > 1 else torch.tensor(math.nan)
    return float(within), float(across)


def normalised_std(features: Tensor) -> float:
    """SimSiam's collapse indicator: std over the cells of each channel of the L2-normalised (B, D, h, w) features,
    averaged over channels (0 = collapsed, ~1/sqrt(D) = spread)."""
    z = F.normalize(features.double().flatten(2).transpose(1, 2).reshape(-1, features.shape[1]), dim=1)  # (cells, D)
    return float(z.std(dim=0).mean())


def effective_rank(features: Tensor) -> float:
    """Roy & Vetterli's effective rank of the (B, C, h, w) feature cells as rows: exp of the entropy of the
    normalised singular values (0 for all-zero features)."""
    cells = features.double().flatten(2).transpose(1, 2).reshape(-1, features.shape[1])  # (cells, C)
    s = torch.linalg.svdvals(cells)
    if float(s.sum()) <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def dense_projection(method: nn.Module) -> tuple[str, Callable[[Tensor], tuple[Tensor, Tensor]]]:
    """(key prefix, views -> (dense projection, C5)) of a method: its dense projector where it has one, else C5
    itself, named by the prefix ``c5_``."""
    if hasattr(method, "dense_projector"):  # DenseCL, PixCon: the dense branch
        def run(x: Tensor) -> tuple[Tensor, Tensor]:
            c5 = method.backbone(x)
            return method.dense_projector(c5), c5
        return "", run
    if hasattr(method, "encode") and hasattr(method, "projector"):  # PixPro(+) and PixPro-FPN (finest level)
        def run(x: Tensor) -> tuple[Tensor, Tensor]:
            maps, c5 = method.encode(x)
            return method.projector(maps[0]), c5
        return "", run
    if isinstance(getattr(method, "projector", None), ConvMLP):  # PixContrast
        def run(x: Tensor) -> tuple[Tensor, Tensor]:
            c5 = method.backbone(x)
            return method.projector(c5), c5
        return "", run

    def c5_only(x: Tensor) -> tuple[Tensor, Tensor]:  # MoCo: only a global head
        c5 = method.backbone(x)
        return c5, c5
    return "c5_", c5_only


@torch.no_grad()
def collapse_indicators(method: nn.Module, views: Tensor) -> tuple[dict[str, float], int]:
    """The collapse indicators (module doc) of a method on normalised views (B, 3, S, S), keys without ``monitor/``,
    and the width D of the features read."""
    prefix, project = dense_projection(method)
    projected, c5 = project(views)
    within, across = cosine_within_and_across(projected)
    values = {f"{prefix}cos_within_image": within, f"{prefix}cos_across_images": across,
              f"{prefix}feature_std": normalised_std(projected), "effective_rank": effective_rank(c5)}
    return values, projected.shape[1]


def collapse_warnings(values: dict[str, float], dim: int) -> dict[str, str]:
    """Indicator key -> why it signals collapse, for the indicators past their threshold (module doc); ``dim`` is
    the width D of the features ``feature_std`` was measured on."""
    out = {}
    min_std = COLLAPSE_STD / math.sqrt(dim)
    for key, value in values.items():
        if key == "cos_across_images" and value > COLLAPSE_COS:
            out[key] = f"cos across images {value:.3f} > {COLLAPSE_COS}"
        elif key.endswith("feature_std") and value < min_std:
            out[key] = f"normalised-feature std {value:.4f} < 0.1/sqrt(D) = {min_std:.4f} (D = {dim})"
        elif key == "effective_rank" and value < COLLAPSE_RANK:
            out[key] = f"C5 effective rank {value:.2f} < {COLLAPSE_RANK:g}"
    return out


# ------------------------------------------------------------------------------------------------ quality probe
class LabelledImages:
    """Labelled images held in memory (float (3, H, W) in [0, 1], int64 (H, W)): the segmentation-dataset protocol
    that ``pixelssl.evaluate.probe`` reads, so the monitor renders or decodes them only once per run."""

    def __init__(self, dataset: Any, count: int, side: int) -> None:
        self.items = []
        for index in range(min(count, len(dataset))):
            image, label = dataset[index]
            size = scaled_size(image.shape[-2], image.shape[-1], side)
            self.items.append((resize_image(image.float().div(255), size), resize_label(label, size)))
        self.num_classes = dataset.num_classes
        self.ignore_index = dataset.ignore_index
        self.class_names = list(getattr(dataset, "class_names", None) or range(dataset.num_classes))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.items[index]


def probe_miou(backbone: nn.Module, train: LabelledImages, val: LabelledImages, device: torch.device) -> float:
    """mIoU of a linear probe on frozen C5, fitted on ``train`` and scored on ``val`` (deterministic; the classifier
    is created, trained and dropped here)."""
    cfg = ProbeConfig(levels=["c5"], epochs=PROBE_EPOCHS, batch_size=max(len(train), len(val)), seed=0)
    train_buckets = cache_features(backbone, train, cfg, device, cfg.train_label_stride)
    head = LinearProbeHead({"c5": backbone.channels["c5"]}, train.num_classes).to(device)
    with torch.enable_grad(), threads(1 if device.type == "cpu" else 0):  # tiny ops: one thread is fastest
        train_cached(head, train_buckets, cfg, train.ignore_index, cfg.train_label_stride)
    val_buckets = cache_features(backbone, val, cfg, device, 1)
    return float(evaluate_probe(head, val_buckets, val.num_classes, val.ignore_index, cfg.batch_size)["miou"])


# ------------------------------------------------------------------------------------------------ the monitor
@contextmanager
def untouched_rng() -> Iterator[None]:
    """Restore every RNG state (torch, CUDA, numpy, python) after the block: a monitor draws nothing from training."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def labelled_sets(cfg: Any) -> tuple[Any, Any]:
    """(train, val) segmentation sets of the quality monitor: ``train.monitor_data`` or the synthetic scenes."""
    t = cfg.train
    if t.monitor_data:
        from pixelssl.data.datasets import SegmentationFolder

        check_monitor_data(t.monitor_data)
        root = Path(t.monitor_data).expanduser()
        try:
            return SegmentationFolder(root / "train"), SegmentationFolder(root / "val")
        except DataError as exc:
            raise ConfigError(f"config key 'train.monitor_data': {str(exc).splitlines()[0]}") from exc
    from pixelssl.data.synthetic import SyntheticScenes

    syn = cfg.data.synthetic
    common = dict(size=syn.size, num_classes=syn.num_classes, seed=syn.seed)
    return (SyntheticScenes(t.monitor_images, split="train", **common),
            SyntheticScenes(t.monitor_images, split="val", **common))


def check_monitor_data(path: str) -> None:
    """Raise a ConfigError naming ``train.monitor_data`` unless it is a folder with train/ and val/ sub-folders."""
    root = Path(path).expanduser()
    missing = [p for p in (root, root / "train", root / "val") if not p.is_dir()]
    if missing:
        raise ConfigError(f"config key 'train.monitor_data': {missing[0]} is not a folder (expected a segmentation "
                          f"folder with train/ and val/, each holding images/ and labels/)")


def fixed_views(source: Any, count: int, size: int, scale: tuple[float, float], ratio: tuple[float, float]) -> Tensor:
    """Normalised (N, 3, size, size) view 1 of the first ``count`` readable images of ``source``, with crops drawn
    from a fixed seed (the same batch at every call and in every run with these settings)."""
    sampler = TwoViewSampler(size, scale, ratio, flip_prob=0.5)
    views = []
    for index in range(min(len(source), 2 * count)):
        if len(views) == count:
            break
        try:
            image = source.load(index)
        except DataError:
            continue
        views.append(normalize(sampler.view(image, torch.Generator().manual_seed(VIEW_SEED + index)).image))
    if len(views) < 2:
        raise DataError(f"train.monitor_every: found {len(views)} readable training image(s); the collapse "
                        "indicators need at least 2")
    return torch.stack(views)


class Monitor:
    """The live monitors of one run: the fixed views and labelled images, and what was flagged so far."""

    def __init__(self, cfg: Any, source: Any, device: torch.device) -> None:
        t, d = cfg.train, cfg.data
        self.device = device
        self.memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
        with untouched_rng():
            self.views = fixed_views(source, t.monitor_images, d.image_size, tuple(d.crop_scale), tuple(d.crop_ratio))
            train, val = labelled_sets(cfg)
            self.train = LabelledImages(train, t.monitor_images, t.monitor_image_size)
            self.val = LabelledImages(val, t.monitor_images, t.monitor_image_size)
        self.enabled = True
        self.flagged: set[str] = set()  # indicators past their threshold at the last call
        self.feature_dim = 0  # width of the features the indicators read (set by measure)

    def measure(self, method: nn.Module) -> dict[str, float]:
        """Every monitor value of the method now (``monitor/...`` keys); changes no state of the method or RNGs."""
        with untouched_rng(), eval_mode(method):
            views = self.views.to(self.device).contiguous(memory_format=self.memory_format)
            values, self.feature_dim = collapse_indicators(method, views)
            values["probe_miou"] = probe_miou(method.backbone, self.train, self.val, self.device)
        return {f"monitor/{k}": v for k, v in values.items()}

    def write(self, step: int, method: nn.Module, writer: Any) -> float:
        """Measure, write the record, warn on newly crossed thresholds; returns the seconds spent (kept out of the
        loop's throughput). A failure is reported once and switches the monitor off: it must not stop training."""
        if not self.enabled:
            return 0.0
        started = time.perf_counter()
        try:
            record = self.measure(method)
            record["monitor/seconds"] = time.perf_counter() - started
            writer.write(step, record)
        except Exception as exc:  # noqa: BLE001 - a diagnostic's failure is logged, never raised
            text = str(exc).strip()
            log.warning("train.monitor_every: monitor failed at step %d (%s); no more monitors this run", step,
                        text.splitlines()[0] if text else type(exc).__name__)
            self.enabled = False
            return time.perf_counter() - started
        crossed = collapse_warnings({k.removeprefix("monitor/"): v for k, v in record.items()}, self.feature_dim)
        for key in sorted(set(crossed) - self.flagged):
            log.warning("step %d: features may be collapsing: %s", step, crossed[key])
        self.flagged = set(crossed)
        return time.perf_counter() - started


def build_monitor(cfg: Any, source: Any, device: torch.device, is_main: bool) -> Monitor | None:
    """The run's monitor on rank 0 when ``train.monitor_every`` > 0, else None; a bad ``train.monitor_data`` is a
    ConfigError on every rank, before training starts."""
    if not cfg.train.monitor_every:
        return None
    if cfg.train.monitor_data:
        check_monitor_data(cfg.train.monitor_data)
    return Monitor(cfg, source, device) if is_main else None
