"""Pre-training batches: two views per image, reproducible per (seed, epoch, index).

Every sample draws its crops from its own generator and its photometric augmentation from a forked,
re-seeded torch RNG, so a batch depends only on (seed, step): resuming at step k yields exactly the
batches an uninterrupted run would have seen, for any number of loader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from pixelssl.data.datasets import ImageSource, load_with_fallback
from pixelssl.data.decode import EncodedImage
from pixelssl.data.device_decode import DECODE_COLUMNS, decode_row
from pixelssl.data.views import TwoViewSampler, View
from pixelssl.data.worker_report import LoadTracker
from pixelssl.errors import DataError

log = logging.getLogger(__name__)


def sample_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for one sample (independent streams for crops and photometry)."""
    return int(np.random.SeedSequence([seed, epoch, index, stream]).generate_state(2, dtype=np.uint64)[0] >> 1)


class TwoViewDataset(Dataset):
    """Item ``(epoch, index)`` -> dict with both views, their boxes and flip flags.

    Unreadable files are replaced by the next readable one; their paths travel with the batch
    (``"skipped"``) so the training process can warn once per file and count them.

    With ``param_samplers`` (``data.device_augment``) the views stay uint8 and each view's photometric parameters,
    drawn from the same seeded RNG stream as the CPU transforms would draw them, travel as ``photo1`` / ``photo2``
    to be applied to the whole batch on the training device (``pixelssl.data.device_augment``). With
    ``device_decode`` too, plain JPEGs stay encoded: the sample carries the file bytes (``encoded``), the header
    size, orientation and both crops (``decode``) and blank views, filled on the device
    (``pixelssl.data.device_decode``); boxes, flips and photometric parameters are the CPU path's own.
    """

    def __init__(self, source: ImageSource, views: TwoViewSampler,
                 augment: tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]], seed: int,
                 param_samplers: tuple[Callable[[], Tensor], Callable[[], Tensor]] | None = None,
                 device_decode: bool = False) -> None:
        if device_decode and param_samplers is None:
            raise ValueError("device decoding ships uint8 views, so it needs the photometric step on the device too")
        self.source = source
        self.views = views
        self.augment = augment
        self.seed = seed
        self.param_samplers = param_samplers
        # JPEGs leave the worker encoded (data.device_decode) when the source can hand them out that way
        self.read_encoded = getattr(source, "load_encoded", None) if device_decode else None
        self.device_decode = device_decode
        self.tracker: LoadTracker | None = None  # set when loader workers run (names the file if one dies)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        tracker = self.tracker
        name = self.source.describe(index)
        if tracker is not None:
            tracker.loading(name)
        try:
            image, skipped = load_with_fallback(self.source, index, read=self.read_encoded)
            if skipped:
                name = self.source.describe((index + len(skipped)) % len(self.source))
                if tracker is not None:
                    tracker.loading(name)
            sample = self._views(image, epoch, index)
            if self.device_decode:
                sample["name"] = name
        except DataError:
            raise
        except Exception as exc:  # e.g. an I/O error or an augmentation failing on an odd image: name the image
            raise DataError(f"{name}: {type(exc).__name__}: {exc}") from exc
        if tracker is not None:
            tracker.done(name)
        return {**sample, "skipped": skipped}

    def _views(self, image: Tensor | EncodedImage, epoch: int, index: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, 0))
        pending: dict[str, Tensor] = {}
        if isinstance(image, EncodedImage):  # crops drawn from the header's size; cut on the device
            crops = self.views.draw(image.height, image.width, generator)
            blank = torch.zeros(3, self.views.size, self.views.size, dtype=torch.uint8)
            first, second = (View(blank, c.box(image.height, image.width), c.flipped) for c in crops)
            pending = {"encoded": image.data, "decode": decode_row(image, crops)}
        else:
            first, second = self.views(image, generator)
            if self.device_decode:
                pending = {"encoded": torch.zeros(0, dtype=torch.uint8),
                           "decode": torch.zeros(DECODE_COLUMNS, dtype=torch.int64)}
        photo: dict[str, Tensor] = {}
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only (what the transforms draw from): torch.manual_seed would also reseed every
            # accelerator's generator, which fork_rng(devices=[]) does not restore, and costs ~1.4 ms per call
            # here (it records a stack trace for each lazily initialised device).
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index, 1))
            if self.param_samplers is None:
                view1 = self.augment[0](first.image)
                view2 = self.augment[1](second.image)
            else:
                view1, view2 = first.image, second.image
                photo = {"photo1": self.param_samplers[0](), "photo2": self.param_samplers[1]()}
        return {"view1": view1, "view2": view2, "box1": first.box, "box2": second.box,
                "flip1": torch.tensor(first.flipped), "flip2": torch.tensor(second.flipped), **photo, **pending}


LISTED_KEYS = ("encoded", "name")  # per-sample values of different sizes or types: kept as lists


def collate_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors; list the encoded files and names; concatenate the lists of skipped file paths."""
    batch: dict[str, Any] = {k: torch.stack([s[k] for s in samples]) for k in samples[0]
                             if k != "skipped" and k not in LISTED_KEYS}
    batch.update({k: [s[k] for s in samples] for k in LISTED_KEYS if k in samples[0]})
    batch["skipped"] = [p for s in samples for p in s["skipped"]]
    return batch


def steps_per_epoch(num_items: int, batch_size: int) -> int:
    """Full batches in one pass over ``num_items`` (the incomplete last batch is dropped)."""
    return num_items // batch_size


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields the batches of steps ``start_step .. total_steps - 1`` (this rank's shard of each).

    Epoch e visits a permutation of the dataset seeded by (seed, e); step s uses batch ``s % steps_per_epoch``
    of epoch ``s // steps_per_epoch`` (the incomplete last batch of an epoch is dropped). ``batch_size`` is the
    global batch; with ``world_size`` processes, rank r takes its r-th contiguous part, so the ranks' shards are
    disjoint, concatenate (in rank order) to the single-process batch, and still depend only on (seed, step).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int, total_steps: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_items < batch_size:
            raise ValueError(f"the dataset has {num_items} images, fewer than one batch of {batch_size}")
        if batch_size % world_size or not 0 <= rank < world_size:
            raise ValueError(f"a batch of {batch_size} does not split into {world_size} equal shards (rank {rank})")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch(num_items, batch_size)
        self.shard = batch_size // world_size
        self.rank = rank

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)

    def _order(self, epoch: int) -> Tensor:
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, 0, stream=2))
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, order = -1, None
        for step in range(self.start_step, self.total_steps):
            step_epoch, within = divmod(step, self.steps_per_epoch)
            if step_epoch != epoch:
                epoch, order = step_epoch, self._order(step_epoch)
            first = within * self.batch_size + self.rank * self.shard
            yield [(epoch, int(i)) for i in order[first:first + self.shard]]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers must not compete with the training threads


def build_pretrain_loader(dataset: TwoViewDataset, batch_size: int, seed: int, start_step: int,
                          total_steps: int, num_workers: int, pin_memory: bool = False, rank: int = 0,
                          world_size: int = 1) -> DataLoader:
    """A DataLoader over this rank's shards of the steps still to run (workers seeded per sample, not per process).

    One iterator serves the whole run (the sampler spans every remaining step), so workers live until the end
    without ``persistent_workers``; ``pin_memory`` makes the host-to-GPU copies asynchronous.
    """
    sampler = StepBatchSampler(len(dataset), batch_size, seed, start_step, total_steps, rank, world_size)
    dataset.tracker = LoadTracker() if num_workers > 0 else None  # a dead worker is reported with its file
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_pairs,
        pin_memory=pin_memory, worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched (exact resume)
    )


def build_image_source(data_cfg: Any) -> ImageSource:
    """The training images: an image folder when ``data.root`` is set, else the built-in synthetic scenes."""
    if data_cfg.root:
        from pixelssl.data.datasets import ImageFolder

        return ImageFolder(data_cfg.root)
    from pixelssl.data.synthetic import SyntheticScenes

    syn = data_cfg.synthetic
    return SyntheticScenes(syn.num_images, size=syn.size, num_classes=syn.num_classes, seed=syn.seed, split="train")


def build_two_view_dataset(data_cfg: Any, seed: int) -> TwoViewDataset:
    """Source + crop sampler + per-view photometric augmentation (or, with ``data.device_augment``, its
    parameters only), as configured in ``data``."""
    from pixelssl.data.augment import build_augment
    from pixelssl.data.device_augment import build_param_samplers

    views = TwoViewSampler(data_cfg.image_size, tuple(data_cfg.crop_scale), tuple(data_cfg.crop_ratio),
                           data_cfg.flip_prob, data_cfg.require_overlap, data_cfg.max_resample)
    augment = (build_augment(data_cfg.augment, 0), build_augment(data_cfg.augment, 1))
    samplers = build_param_samplers(data_cfg.augment) if data_cfg.device_augment else None
    source = build_image_source(data_cfg)
    if data_cfg.device_decode and not hasattr(source, "load_encoded"):
        log.warning("data.device_decode: the built-in synthetic scenes are not JPEG files; they are made on the CPU")
    return TwoViewDataset(source, views, augment, seed, samplers, device_decode=data_cfg.device_decode)
