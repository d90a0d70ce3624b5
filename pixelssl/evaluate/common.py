"""Small helpers shared by the evaluation protocols: devices, threads, eval mode, dataset checks, configs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from pixelssl.config import opt
from pixelssl.config import validate as check_declared
from pixelssl.dist import all_reduce_mean
from pixelssl.errors import DataError

log = logging.getLogger(__name__)


def select_device(name: str) -> torch.device:
    """The evaluation device for config key ``device`` (``auto`` -> CUDA when available)."""
    from pixelssl.engine.runtime import resolve_device

    return resolve_device(name, key="device")


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Temporarily set torch's CPU thread count (0 = leave it)."""
    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put a module in eval mode for the block and restore its previous train/eval flags afterwards."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags.items():
            m.training = flag


def item_name(dataset: Any, index: int) -> str:
    """The dataset's name for item ``index`` (its file name where it has one), for error messages."""
    namer = getattr(dataset, "name", None)
    return str(namer(index)) if callable(namer) else f"item {index}"


def check_label(label: Tensor, num_classes: int, ignore_index: int, where: str) -> None:
    """Raise a DataError naming ``where`` when a label holds values outside 0..num_classes-1 and ignore_index."""
    valid = (label == ignore_index) | ((label >= 0) & (label < num_classes))
    if not bool(valid.all()):
        bad = int(label[~valid][0])
        raise DataError(f"{where}: label value {bad} is outside 0..{num_classes - 1} "
                        f"(and is not the ignore index {ignore_index})")


def check_compatible(train_ds: Any, val_ds: Any) -> None:
    """Train and val sets must be non-empty and agree on the number of classes and the void index."""
    for attr in ("num_classes", "ignore_index"):
        if getattr(train_ds, attr) != getattr(val_ds, attr):
            raise DataError(f"train and val sets disagree on {attr}: "
                            f"{getattr(train_ds, attr)} vs {getattr(val_ds, attr)}")
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise DataError(f"empty dataset: {len(train_ds)} training and {len(val_ds)} validation images")


def class_names(dataset: Any) -> list[str]:
    """The dataset's class names, or "0", "1", ... when it has none."""
    names = getattr(dataset, "class_names", None)
    return list(names) if names else [str(k) for k in range(dataset.num_classes)]


def typed_config(config: Any, schema: type, validate: Callable[[Any], None]) -> Any:
    """A validated typed OmegaConf config from None (defaults), a dataclass instance or an OmegaConf object: the
    keys' declared bounds and choices (``config.validate``), then the schema's own ``validate`` (several keys)."""
    cfg = OmegaConf.structured(schema if config is None else config)
    check_declared(cfg)
    validate(cfg)
    return cfg


@dataclass
class FinetuneRuntimeConfig:
    """The keys every fine-tuning protocol shares: where it runs, its precision, loader and logging."""

    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)", ge=0)
    amp: bool = opt(True, "bf16 autocast on GPUs that support it (CPU always runs fp32)")
    num_workers: int = opt(0, "data-loader worker processes (0 = load in the training process)", ge=0)
    log_every: int = opt(20, "steps between logged training losses", ge=1)


class LossLog:
    """A fine-tuning run's ``train_loss``: [step, mean loss] every ``every`` steps and at the last one, the mean
    taken over the steps since the previous entry and over the processes; each entry is also logged."""

    def __init__(self, every: int, total: int, label: str) -> None:
        self.every, self.total, self.label = every, total, label
        self.history: list[list[float]] = []
        self._window: list[Tensor] = []

    def add(self, step: int, loss: Tensor) -> None:
        """Record the loss of 0-based ``step``."""
        self._window.append(loss.detach())
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            self.history.append([step + 1, float(all_reduce_mean(torch.stack(self._window).mean()))])
            self._window = []
            log.info("%s step %d/%d: loss %.4f", self.label, step + 1, self.total, self.history[-1][1])


class Subset:
    """The items ``indices`` of a segmentation / classification dataset, keeping its attributes and item names."""

    def __init__(self, dataset: Any, indices: list[int] | range) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.num_classes = dataset.num_classes
        self.ignore_index = getattr(dataset, "ignore_index", -100)
        self.class_names = class_names(dataset)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def name(self, index: int) -> str:
        """The underlying dataset's name of item ``index``."""
        return item_name(self.dataset, self.indices[index])


def bf16_autocast(amp: bool, device: torch.device) -> Any:
    """bf16 autocast on a GPU that supports it when ``amp`` is on; otherwise a no-op context (evaluation training)."""
    enabled = bool(amp) and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
