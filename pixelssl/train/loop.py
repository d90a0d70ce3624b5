"""The pre-training loop: one readable function, top to bottom.

prepare the run (config, processes, data, model, optimiser, maybe a checkpoint) -> for each step: lr, teacher
momentum, forward under autocast, finite check, backward, (clip), step -> log / checkpoint -> export the backbone.

Under ``torchrun`` every process runs this same function on its shard of each step's global batch
(``engine/distributed.py``); gradients are averaged by DDP, logged values are means over the processes, and only
rank 0 writes the run directory, metrics, checkpoints and progress.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pixelssl import dist
from pixelssl.config import PretrainConfig, to_dict
from pixelssl.data.device_batch import DeviceBatches
from pixelssl.data.loader import build_pretrain_loader, build_two_view_dataset
from pixelssl.data.worker_report import reporting
from pixelssl.engine import distributed
from pixelssl.engine.checkpoint import save_checkpoint
from pixelssl.engine.lock import RunLock
from pixelssl.engine.logger import FigureDrawer, MetricsWriter, Progress
from pixelssl.engine.numerics import NonFiniteGuard, first_nonfinite, gradient_problem
from pixelssl.engine.preemption import StopRequest
from pixelssl.engine.run import load_run_config, make_run_dir, timestamped
from pixelssl.engine.runtime import capture_rng, resolve_precision, restore_rng, seed_everything
from pixelssl.engine.schedules import set_lr, warmup_cosine
from pixelssl.errors import DataError, PixelSSLError, Preempted, TrainingDiverged
from pixelssl.io import save_weights
from pixelssl.methods.registry import build_method
from pixelssl.models.backbones import save_backbone
from pixelssl.train.monitor import build_monitor
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
    ctx = distributed.init(cfg.train.device)
    package_log = logging.getLogger("pixelssl")
    level = package_log.level
    if not ctx.is_main:
        package_log.setLevel(logging.WARNING)  # rank 0 reports; the others only warn
    finished = False
    try:
        result = _pretrain(cfg, state, ckpt_path, ctx, figures)
        finished = True
        return result
    finally:
        package_log.setLevel(level)
        distributed.shutdown(ctx, wait=finished)


def _check_compile(device: torch.device) -> None:
    compilers = [c for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++") if c]
    if device.type == "cpu" and not any(shutil.which(c) for c in compilers):
        raise PixelSSLError("train.compile=true on CPU needs a C++ compiler (g++ or clang++) for torch.compile's "
                            "inductor backend; install one or set train.compile=false")


def _pretrain(cfg: PretrainConfig, state: dict | None, ckpt_path: Path | None,
              ctx: distributed.DistContext, figures: FigureDrawer | None) -> PretrainResult:
    t = cfg.train
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    seed_everything(t.seed)  # the same on every rank: identical initial weights and queues
    device = ctx.device
    precision = resolve_precision(t.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest convolution algorithms
    local_batch = distributed.local_batch_size(t.batch_size, ctx.world_size)  # train.batch_size is global
    run_dir = distributed.on_main(ctx, lambda: make_run_dir(cfg, ckpt_path, default_run_name))
    if state is not None:
        log.info("resuming %s from step %d", run_dir, state["step"])

    dataset = build_two_view_dataset(cfg.data, t.seed)
    steps_per_epoch = len(dataset) // t.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"the training set has {len(dataset)} images, fewer than one batch "
                        f"(train.batch_size={t.batch_size})")
    monitor = build_monitor(cfg, dataset.source, device, ctx.is_main)  # rank 0 only; bad monitor_data fails here
    total_steps = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    warmup = t.warmup_steps if t.warmup_steps >= 0 else round(t.warmup_epochs * steps_per_epoch)
    peak_lr = t.base_lr * t.batch_size / 256  # linear scaling by the global batch

    method = build_method(cfg).to(device)
    if ctx.enabled and cfg.model.sync_bn:
        method = dist.convert_sync_batchnorm(method, device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    method = method.to(memory_format=memory_format)
    optimizer = build_optimizer(method, t.optimizer, peak_lr, t.weight_decay, t.sgd_momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    start_step, skipped, nonfinite_skips = 0, set(), 0
    if state is not None:
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        saved_world = int(state.get("world_size", 1))
        ranks_rng = state.get("rng_ranks")
        restore_rng(ranks_rng[ctx.rank] if ranks_rng and saved_world == ctx.world_size else state["rng"])
        if saved_world != ctx.world_size:
            log.warning("resuming a run written by %d process(es) with %d: same data order and weights, but BatchNorm "
                        "groups differ unless model.sync_bn, so it is not bit-identical", saved_world, ctx.world_size)
        start_step, skipped = int(state["step"]), set(state.get("skipped_files", []))
        nonfinite_skips = int(state.get("nonfinite_skips", 0))
    params = [p for p in method.parameters() if p.requires_grad]
    model = distributed.wrap(method, ctx)  # DDP when distributed; `method` stays the unwrapped module
    if t.compile:
        _check_compile(device)
        model.compile()  # in place: parameter names (checkpoints, exports) do not change
    to_device = DeviceBatches(cfg.data, device, memory_format)  # copy, decode (device_decode), augment, layout

    log.info("run %s: %s on %s, %d steps (%d per epoch), batch %d (%d process(es) x %d), lr %.4g, %s on %s",
             run_dir, cfg.method.name, cfg.model.backbone, total_steps, steps_per_epoch, t.batch_size,
             ctx.world_size, local_batch, peak_lr, precision.label, device)
    loader = build_pretrain_loader(dataset, t.batch_size, t.seed, start_step, total_steps, cfg.data.num_workers,
                                   pin_memory=device.type == "cuda", rank=ctx.rank, world_size=ctx.world_size)
    writer = MetricsWriter(run_dir, start_step, t.tensorboard, figures) if ctx.is_main else None
    bar = Progress(total_steps, start_step, t.progress and ctx.is_main, f"{cfg.method.name}")
    ckpt_dir = run_dir / "checkpoints"
    guard = NonFiniteGuard(t.nonfinite, t.max_nonfinite_skips, nonfinite_skips)

    def last_checkpoint() -> str:
        last = ckpt_dir / "last.pt"
        return f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"

    def checkpoint(step: int) -> None:  # every rank takes part (collectives); rank 0 writes
        dist.average_batchnorm_stats(method)
        bad = first_nonfinite(method)
        if bad is not None:  # never overwrite a good checkpoint with a broken model
            raise TrainingDiverged(f"{bad} holds NaN/inf at step {step}; no checkpoint written ({last_checkpoint()})")
        dist.assert_replicas_match(method, step)
        rngs = dist.all_gather_objects(capture_rng())
        all_skipped = sorted(set().union(*dist.all_gather_objects(sorted(skipped))))
        if ctx.is_main:
            save_checkpoint(ckpt_dir, {
                "model": method.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rngs[0], "step": step, "config": to_dict(cfg), "skipped_files": all_skipped,
                "world_size": ctx.world_size, "nonfinite_skips": guard.skips, **({"rng_ranks": rngs} if ctx.enabled else {}),
            }, step, t.keep_checkpoints)

    def note_skipped(paths: list[str]) -> None:  # warn once per unreadable file; checkpoints keep the set
        for path in paths:
            if path not in skipped:
                skipped.add(path)
                log.warning("skipped unreadable image %s", path)

    model.train()
    first_loss = last_loss = float("nan")
    window_loss, window_good, window_steps, window_wait = 0.0, 0, 0, 0.0  # good: steps with a finite loss
    started = window_start = time.perf_counter()
    wait_start = time.perf_counter()
    step = done = start_step  # done: steps finished (and applied or skipped) so far
    lock = RunLock(run_dir) if ctx.is_main else None  # one writer per run directory
    if lock is not None:
        lock.acquire()
    stop = StopRequest().__enter__()  # SIGTERM / SIGINT / SIGUSR1 -> checkpoint after this step, then Preempted
    try:
        for step, batch in enumerate(reporting(loader, dataset.tracker), start=start_step):
            window_wait += time.perf_counter() - wait_start
            batch, unreadable = to_device(batch)
            note_skipped(unreadable)

            lr = warmup_cosine(step, total_steps, peak_lr, warmup, t.final_lr, t.warmup_start_ratio)
            set_lr(optimizer, lr)
            momentum = method.momentum_at(step, total_steps) if method.has_teacher else 0.0
            if method.has_teacher:
                method.momentum_update(momentum)  # before keys are computed, as the PixPro release
            guard.before_forward(method)
            with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.enabled):
                out = model(batch)
            loss = out["loss"]
            value = float(dist.all_reduce_mean(loss.detach()))  # the global batch's loss, on every rank
            problem = None if math.isfinite(value) else f"loss became {value}"
            optimizer.zero_grad(set_to_none=True)
            if problem is None:
                scaler.scale(loss).backward()
                problem = gradient_problem(params, optimizer, scaler, t.grad_clip)  # same on every rank (DDP)
            if problem is None:
                scaler.step(optimizer)
                scaler.update()
                if math.isnan(first_loss):
                    first_loss = value
                window_loss, window_good, last_loss = window_loss + value, window_good + 1, value
            else:  # the unused gradients are cleared by the next step's zero_grad
                guard.bad_step(method, step, problem, last_checkpoint())
            done = step + 1
            window_steps += 1
            if done % t.log_every == 0 or done == total_steps or step == start_step:
                elapsed = time.perf_counter() - window_start
                names = sorted(out)
                means = dist.all_reduce_mean(torch.stack([out[k].detach().float() for k in names])).tolist()
                record = dict(zip(names, means))
                record.update(loss=window_loss / window_good if window_good else float("nan"), lr=lr, momentum=momentum,
                              epoch=done / steps_per_epoch,
                              img_per_s=window_steps * t.batch_size / max(elapsed, 1e-9),
                              data_wait=window_wait / max(elapsed, 1e-9), nonfinite_skips=guard.skips)
                if writer is not None:
                    writer.write(done, record)
                bar.update(done, f"loss {record['loss']:.4f}  lr {lr:.3g}  {record['img_per_s']:.1f} img/s")
                window_loss, window_good, window_steps, window_wait = 0.0, 0, 0, 0.0
                window_start = time.perf_counter()
            if writer is not None and t.figure_every and done % t.figure_every == 0:  # eval mode, no state changes
                window_start += writer.write_figures(done, method, cfg)  # figure time is not training throughput
            if monitor is not None and (done % t.monitor_every == 0 or done == total_steps):  # changes no state
                window_start += monitor.write(done, method, writer)  # nor is monitor time
            saved = done % t.checkpoint_every == 0 or done == total_steps
            if saved:
                checkpoint(done)
            # Every rank must agree to stop (a signal may reach only one), else the others hang in a collective.
            stop_flag = torch.tensor([float(stop.requested)], device=device)
            if done < total_steps and float(dist.all_reduce_mean(stop_flag)) > 0:
                if not saved:
                    checkpoint(done)
                raise Preempted(f"{stop.signal_name or 'a stop signal (another process)'} after step {done}/"
                                f"{total_steps}; checkpoint written; continue with: pixelssl pretrain --resume {run_dir}")
            wait_start = time.perf_counter()
    except DataError as exc:  # the data pipeline failed mid-run (a worker died, an image broke the augmentation)
        if ctx.enabled or done == start_step:
            raise
        checkpoint(done)  # single process: nothing is waiting in a collective, so keep the finished steps
        raise DataError(f"{exc}; checkpoint written after step {done}: fix or remove the file, then continue "
                        f"with: pixelssl pretrain --resume {run_dir}") from exc
    finally:
        if dataset.tracker is not None:
            dataset.tracker.cleanup()
        stop.__exit__()
        if lock is not None:
            lock.release()
        bar.close()
        if writer is not None:
            writer.close()

    seconds = time.perf_counter() - started
    backbone_path = run_dir / "backbone.safetensors"
    dist.average_batchnorm_stats(method)
    if ctx.is_main:
        save_backbone(method.backbone, backbone_path)
        for name, tensors in method.extra_weights(method.state_dict()).items():  # e.g. pixpro_fpn's fpn.safetensors
            save_weights(tensors, run_dir / name)
            log.info("%s written to %s", name, run_dir / name)
    skipped_total = len(set().union(*dist.all_gather_objects(sorted(skipped))))
    if skipped_total:
        log.warning("%d unreadable image(s) were skipped in total", skipped_total)
    trained = total_steps - start_step
    log.info("finished %d steps in %.1f s; backbone written to %s", trained, seconds, backbone_path)
    distributed.barrier(ctx)  # the backbone file exists for every rank's result
    return PretrainResult(run_dir, total_steps, first_loss, last_loss, seconds,
                          trained * t.batch_size / max(seconds, 1e-9), backbone_path, skipped_total, method)
