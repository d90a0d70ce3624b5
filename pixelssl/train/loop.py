"""The pre-training loop, read top to bottom (the shape of torchvision's reference scripts):

``pretrain`` -> ``_set_up`` (process, data, run directory, model, optimiser, maybe a checkpoint) -> ``_train``:
for each step ``_train_step`` (lr, teacher momentum, forward under autocast, finite check, backward, (clip),
step), then ``_bookkeeping`` (metric line, figures, monitors, checkpoint, stop signals) -> ``_finish`` (export
the backbone).

Under ``torchrun`` every process runs these same functions on its shard of each step's global batch
(``engine/distributed.py``); gradients are averaged by DDP, logged values are means over the processes, and only
rank 0 writes the run directory, metrics, checkpoints and progress.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from pixelssl import dist
from pixelssl.config import PretrainConfig, to_dict
from pixelssl.data.device_batch import DeviceBatches
from pixelssl.data.loader import TwoViewDataset, build_pretrain_loader, build_two_view_dataset
from pixelssl.data.worker_report import reporting
from pixelssl.engine import distributed
from pixelssl.engine.checkpoint import last_checkpoint_note, save_checkpoint
from pixelssl.engine.lock import RunLock
from pixelssl.engine.logger import FigureDrawer, RunLogger, SkippedFiles, Window
from pixelssl.engine.numerics import NonFiniteGuard, assert_finite, gradient_problem
from pixelssl.engine.preemption import StopRequest
from pixelssl.engine.run import load_run_config, make_run_dir, timestamped
from pixelssl.engine.runtime import Precision, capture_rng, prepare, resolve_precision, restore_rng
from pixelssl.engine.schedules import set_lr, warmup_cosine
from pixelssl.errors import DataError, PixelSSLError
from pixelssl.io import save_weights
from pixelssl.methods.registry import build_method
from pixelssl.models.backbones import save_backbone
from pixelssl.train.monitor import Monitor, build_monitor
from pixelssl.train.optim import build_optimizer

log = logging.getLogger(__name__)

# Keys that may change when resuming: they do not alter the computation.
RESUME_SAFE_KEYS = {
    "data.num_workers", "train.progress", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.tensorboard", "train.threads", "train.nonfinite", "train.max_nonfinite_skips", "train.figure_every",
    "train.monitor_every", "train.monitor_data", "train.monitor_images", "train.monitor_image_size",
}


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int
    first_loss: float
    final_loss: float
    seconds: float
    images_per_second: float
    backbone_path: Path
    skipped_files: int
    method: nn.Module | None = field(default=None, repr=False)  # the trained method (this process's replica)


@dataclass
class _Run:
    """One process's part of a pre-training run, as ``_set_up`` builds it."""

    cfg: PretrainConfig
    ctx: distributed.DistContext
    run_dir: Path
    dataset: TwoViewDataset
    batches: distributed.BatchPlan
    total_steps: int
    warmup_steps: int
    peak_lr: float
    precision: Precision
    method: nn.Module  # the method itself: state dicts, teacher updates, figures, export
    model: nn.Module  # what a step calls: ``method`` wrapped in DDP when distributed (and compiled in place)
    params: list[nn.Parameter]  # the trainable ones (clipping, the gradient check)
    optimizer: Optimizer
    scaler: torch.amp.GradScaler
    to_device: DeviceBatches  # copy, decode (device_decode), augment, layout
    monitor: Monitor | None
    guard: NonFiniteGuard
    skipped: SkippedFiles
    start_step: int
    first_loss: float = math.nan  # of the first step this process applied
    last_loss: float = math.nan

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def default_run_name(cfg: PretrainConfig) -> str:
    return timestamped(f"{cfg.method.name}_{cfg.model.backbone.replace(':', '-')}")


def pretrain(cfg: PretrainConfig | None = None, resume: str | Path | None = None,
             overrides: list[str] | None = None, figures: FigureDrawer | None = None) -> PretrainResult:
    """Pre-train a backbone with the configured method; ``resume`` continues a run exactly where it stopped.

    Started by ``torchrun`` (WORLD_SIZE > 1), each process trains on its shard of every step's batch; the
    result is the same in every process. ``figures`` draws the TensorBoard images every ``train.figure_every``
    steps (``pixelssl pretrain`` hands ``report.figures.TensorBoardFigures()``).
    """
    cfg, state, ckpt_path = load_run_config(PretrainConfig, cfg, resume, overrides, RESUME_SAFE_KEYS)
    if cfg.train.figure_every and figures is None:
        log.warning("train.figure_every=%d, but pretrain() was given no figure drawer (figures=pixelssl.report."
                    "figures.TensorBoardFigures()); no figures this run", cfg.train.figure_every)
    package_log = logging.getLogger("pixelssl")
    level = package_log.level
    with distributed.process_group(cfg.train.device) as ctx:
        if not ctx.is_main:
            package_log.setLevel(logging.WARNING)  # rank 0 reports; the others only warn
        try:
            return _pretrain(cfg, state, ckpt_path, ctx, figures)
        finally:
            package_log.setLevel(level)


def _pretrain(cfg: PretrainConfig, state: dict | None, ckpt_path: Path | None,
              ctx: distributed.DistContext, figures: FigureDrawer | None) -> PretrainResult:
    run = _set_up(cfg, state, ckpt_path, ctx)
    started = time.perf_counter()
    # One writer per run directory; SIGTERM / SIGINT / SIGUSR1 -> checkpoint after this step, then Preempted.
    with RunLock(run.run_dir) if ctx.is_main else nullcontext(), StopRequest() as stop:
        t = cfg.train
        logger = RunLogger(run.run_dir, run.start_step, run.total_steps, t.log_every, t.batch_size,
                           tensorboard=t.tensorboard, progress=t.progress, description=cfg.method.name,
                           figures=figures, main=ctx.is_main)
        try:
            _train(run, logger, stop)
        finally:
            if run.dataset.tracker is not None:
                run.dataset.tracker.cleanup()
            logger.close()
    return _finish(run, time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------------ set-up
def _set_up(cfg: PretrainConfig, state: dict | None, ckpt_path: Path | None, ctx: distributed.DistContext) -> _Run:
    """Process, data, run directory, model and optimiser, restored from ``state`` when resuming."""
    t, device = cfg.train, ctx.device
    prepare(t.threads, t.seed)  # the same seed on every rank: identical initial weights and queues
    precision = resolve_precision(t.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution algorithms
    dataset = build_two_view_dataset(cfg.data, t.seed)
    batches = distributed.plan_batches(len(dataset), t.batch_size, ctx.world_size)  # train.batch_size is global
    run_dir = distributed.on_main(ctx, lambda: make_run_dir(cfg, ckpt_path, default_run_name))
    if state is not None:
        log.info("resuming %s from step %d", run_dir, state["step"])
    monitor = build_monitor(cfg, dataset.source, device, ctx.is_main)  # rank 0 only; bad monitor_data fails here
    total_steps = t.max_steps if t.max_steps > 0 else t.epochs * batches.steps_per_epoch
    warmup = t.warmup_steps if t.warmup_steps >= 0 else round(t.warmup_epochs * batches.steps_per_epoch)
    peak_lr = t.base_lr * t.batch_size / 256  # linear scaling by the global batch

    method = build_method(cfg).to(device)
    if ctx.enabled and cfg.model.sync_bn:
        method = dist.convert_sync_batchnorm(method, device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    method = method.to(memory_format=memory_format)
    optimizer = build_optimizer(method, t.optimizer, peak_lr, t.weight_decay, t.sgd_momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    start_step, skipped, skips = _restore(state, method, optimizer, scaler, ctx) if state is not None else (0, [], 0)
    params = [p for p in method.parameters() if p.requires_grad]
    model = distributed.wrap(method, ctx)  # DDP when distributed; `method` stays the unwrapped module
    if t.compile:
        _check_compile(device)
        model.compile()  # in place: parameter names (checkpoints, exports) do not change

    log.info("run %s: %s on %s, %d steps (%d per epoch), batch %d (%d process(es) x %d), lr %.4g, %s on %s",
             run_dir, cfg.method.name, cfg.model.backbone, total_steps, batches.steps_per_epoch, t.batch_size,
             ctx.world_size, batches.local_batch, peak_lr, precision.label, device)
    return _Run(cfg, ctx, run_dir, dataset, batches, total_steps, warmup, peak_lr, precision, method, model, params,
                optimizer, scaler, DeviceBatches(cfg.data, device, memory_format), monitor,
                NonFiniteGuard(t.nonfinite, t.max_nonfinite_skips, skips), SkippedFiles(skipped), start_step)


def _restore(state: dict, method: nn.Module, optimizer: Optimizer, scaler: torch.amp.GradScaler,
             ctx: distributed.DistContext) -> tuple[int, list[str], int]:
    """Weights, optimiser, scaler and RNG from a checkpoint: (step, skipped files, non-finite skips) so far."""
    method.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    saved_world = int(state.get("world_size", 1))
    ranks_rng = state.get("rng_ranks")
    restore_rng(ranks_rng[ctx.rank] if ranks_rng and saved_world == ctx.world_size else state["rng"])
    if saved_world != ctx.world_size:
        log.warning("resuming a run written by %d process(es) with %d: same data order and weights, but BatchNorm "
                    "groups differ unless model.sync_bn, so it is not bit-identical", saved_world, ctx.world_size)
    return int(state["step"]), list(state.get("skipped_files", [])), int(state.get("nonfinite_skips", 0))


def _check_compile(device: torch.device) -> None:
    compilers = [c for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c]
    if device.type == "cpu" and not any(shutil.which(c) for c in compilers):
        raise PixelSSLError("train.compile=true on CPU needs a C++ compiler (g++ or clang++) for torch.compile's "
                            "inductor backend; install one or set train.compile=false")


# ------------------------------------------------------------------------------------------------------ steps
def _train(run: _Run, logger: RunLogger, stop: StopRequest) -> None:
    """Every remaining step of the run: a training step, then its bookkeeping."""
    cfg, ctx = run.cfg, run.ctx
    loader = build_pretrain_loader(run.dataset, cfg.train.batch_size, cfg.train.seed, run.start_step,
                                   run.total_steps, cfg.data.num_workers, pin_memory=ctx.device.type == "cuda",
                                   rank=ctx.rank, world_size=ctx.world_size)
    run.model.train()
    done = run.start_step  # steps finished (and applied or skipped) so far
    try:
        for step, batch in enumerate(reporting(loader, run.dataset.tracker), start=run.start_step):
            logger.window.data_ready()
            out, lr, momentum = _train_step(run, step, batch, logger.window)
            done = step + 1
            _bookkeeping(run, logger, stop, done, out, lr, momentum)
            logger.window.waiting()
    except DataError as exc:  # the data pipeline failed mid-run (a worker died, an image broke the augmentation)
        if ctx.enabled or done == run.start_step:
            raise
        _checkpoint(run, done)  # single process: nothing is waiting in a collective, so keep the finished steps
        raise DataError(f"{exc}; checkpoint written after step {done}: fix or remove the file, then continue "
                        f"with: pixelssl pretrain --resume {run.run_dir}") from exc


def _train_step(run: _Run, step: int, batch: dict, window: Window) -> tuple[dict[str, Tensor], float, float]:
    """One optimiser step, or a skipped one (``train.nonfinite``): (the method's outputs, lr, teacher momentum)."""
    t, method, optimizer, scaler = run.cfg.train, run.method, run.optimizer, run.scaler
    batch, unreadable = run.to_device(batch)
    run.skipped.note(unreadable)
    lr = warmup_cosine(step, run.total_steps, run.peak_lr, run.warmup_steps, t.final_lr, t.warmup_start_ratio)
    set_lr(optimizer, lr)
    momentum = method.momentum_at(step, run.total_steps) if method.has_teacher else 0.0
    if method.has_teacher:
        method.momentum_update(momentum)  # before keys are computed, as the PixPro release
    run.guard.before_forward(method)
    with torch.autocast(run.ctx.device.type, dtype=run.precision.dtype, enabled=run.precision.enabled):
        out = run.model(batch)
    loss = out["loss"]
    value = float(dist.all_reduce_mean(loss.detach()))  # the global batch's loss, on every rank
    problem = None if math.isfinite(value) else f"loss became {value}"
    optimizer.zero_grad(set_to_none=True)
    if problem is None:
        scaler.scale(loss).backward()
        problem = gradient_problem(run.params, optimizer, scaler, t.grad_clip)  # same on every rank (DDP)
    if problem is None:
        scaler.step(optimizer)
        scaler.update()
        if math.isnan(run.first_loss):
            run.first_loss = value
        run.last_loss = value
        window.step_done(value)
    else:  # the unused gradients are cleared by the next step's zero_grad
        run.guard.bad_step(method, step, problem, last_checkpoint_note(run.ckpt_dir))
        window.step_done()
    return out, lr, momentum


# ------------------------------------------------------------------------------------------------ bookkeeping
def _bookkeeping(run: _Run, logger: RunLogger, stop: StopRequest, done: int, out: dict[str, Tensor], lr: float,
                 momentum: float) -> None:
    """After step ``done``: the metric line, figures, monitors, a checkpoint, and a stop signal turned into one."""
    t = run.cfg.train
    if logger.due(done):
        record = _record(run, logger.window, done, out, lr, momentum)
        logger.line(done, record, f"loss {record['loss']:.4f}  lr {lr:.3g}  {record['img_per_s']:.1f} img/s")
    if t.figure_every and done % t.figure_every == 0:  # eval mode, no state changes; its time is not throughput
        logger.figures(done, run.method, run.cfg)
    if run.monitor is not None and (done % t.monitor_every == 0 or done == run.total_steps):  # changes no state
        logger.window.exclude(run.monitor.write(done, run.method, logger.writer))  # nor is monitor time
    saved = done % t.checkpoint_every == 0 or done == run.total_steps
    if saved:
        _checkpoint(run, done)
    if done < run.total_steps and stop.agreed(run.ctx.device):  # every rank must agree to stop
        if not saved:
            _checkpoint(run, done)
        raise stop.preempted(done, run.total_steps, f"pixelssl pretrain --resume {run.run_dir}")


def _record(run: _Run, window: Window, done: int, out: dict[str, Tensor], lr: float, momentum: float) -> dict:
    """The metric line: the method's outputs averaged over processes, the window's mean loss and throughput."""
    rates = window.rates()
    names = sorted(out)
    means = dist.all_reduce_mean(torch.stack([out[k].detach().float() for k in names])).tolist()
    record = dict(zip(names, means))
    record.update(loss=window.mean_loss(), lr=lr, momentum=momentum, epoch=done / run.batches.steps_per_epoch,
                  **rates, nonfinite_skips=run.guard.skips)
    return record


def _checkpoint(run: _Run, step: int) -> None:
    """Every rank takes part (collectives); rank 0 writes."""
    dist.average_batchnorm_stats(run.method)
    assert_finite(run.method, step, run.ckpt_dir)  # never overwrite a good checkpoint with a broken model
    dist.assert_replicas_match(run.method, step)
    rngs = dist.all_gather_objects(capture_rng())
    skipped = run.skipped.gathered()
    if run.ctx.is_main:
        save_checkpoint(run.ckpt_dir, {
            "model": run.method.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(), "rng": rngs[0], "step": step, "config": to_dict(run.cfg),
            "skipped_files": skipped, "world_size": run.ctx.world_size, "nonfinite_skips": run.guard.skips,
            **({"rng_ranks": rngs} if run.ctx.enabled else {}),
        }, step, run.cfg.train.keep_checkpoints)


def _finish(run: _Run, seconds: float) -> PretrainResult:
    """Export the backbone (and a method's extra weights) and say what the run did."""
    backbone_path = run.run_dir / "backbone.safetensors"
    dist.average_batchnorm_stats(run.method)
    if run.ctx.is_main:
        save_backbone(run.method.backbone, backbone_path)
        for name, tensors in run.method.extra_weights(run.method.state_dict()).items():  # e.g. pixpro_fpn's FPN
            save_weights(tensors, run.run_dir / name)
            log.info("%s written to %s", name, run.run_dir / name)
    skipped_total = len(run.skipped.gathered())
    run.skipped.report_total(skipped_total)
    trained = run.total_steps - run.start_step
    log.info("finished %d steps in %.1f s; backbone written to %s", trained, seconds, backbone_path)
    distributed.barrier(run.ctx)  # the backbone file exists for every rank's result
    return PretrainResult(run.run_dir, run.total_steps, run.first_loss, run.last_loss, seconds,
                          trained * run.cfg.train.batch_size / max(seconds, 1e-9), backbone_path, skipped_total,
                          run.method)
