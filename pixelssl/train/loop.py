"""The pre-training loop: one readable function, top to bottom.

prepare the run (config, data, model, optimiser, maybe a checkpoint) -> for each step: lr, teacher momentum,
forward under autocast, finite check, backward, (clip), step -> log / checkpoint -> export the backbone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pixelssl import __version__
from pixelssl.config import PretrainConfig, to_dict
from pixelssl.data.loader import build_pretrain_loader, build_two_view_dataset
from pixelssl.errors import DataError, TrainingDiverged
from pixelssl.methods.registry import build_method
from pixelssl.models.backbones import save_backbone
from pixelssl.train.checkpoint import save_checkpoint
from pixelssl.train.logger import MetricsWriter, Progress
from pixelssl.train.optim import build_optimizer, lr_at, set_lr
from pixelssl.train.run import start_run, timestamped
from pixelssl.train.runtime import capture_rng, resolve_device, resolve_precision, restore_rng, seed_everything

log = logging.getLogger(__name__)

# Keys that may change when resuming: they do not alter the computation.
RESUME_SAFE_KEYS = {
    "data.num_workers", "train.progress", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.tensorboard", "train.threads",
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


def default_run_name(cfg: PretrainConfig) -> str:
    return timestamped(f"{cfg.method.name}_{cfg.model.backbone.replace(':', '-')}")


def pretrain(cfg: PretrainConfig | None = None, resume: str | Path | None = None,
             overrides: list[str] | None = None) -> PretrainResult:
    """Pre-train a backbone with the configured method; ``resume`` continues a run exactly where it stopped."""
    cfg, state, run_dir = start_run(PretrainConfig, cfg, resume, overrides, RESUME_SAFE_KEYS, default_run_name)
    t = cfg.train

    if t.threads > 0:
        torch.set_num_threads(t.threads)
    seed_everything(t.seed)
    device = resolve_device(t.device)
    precision = resolve_precision(t.amp, device)

    dataset = build_two_view_dataset(cfg.data, t.seed)
    steps_per_epoch = len(dataset) // t.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"the training set has {len(dataset)} images, fewer than one batch "
                        f"(train.batch_size={t.batch_size})")
    total_steps = t.max_steps if t.max_steps > 0 else t.epochs * steps_per_epoch
    warmup = t.warmup_steps if t.warmup_steps >= 0 else round(t.warmup_epochs * steps_per_epoch)
    peak_lr = t.base_lr * t.batch_size / 256

    model = build_method(cfg).to(device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, t.optimizer, peak_lr, t.weight_decay, t.sgd_momentum)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)
    start_step, skipped = 0, set()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        start_step, skipped = int(state["step"]), set(state.get("skipped_files", []))

    log.info("run %s: %s on %s, %d steps (%d per epoch), batch %d, lr %.4g, %s on %s",
             run_dir, cfg.method.name, cfg.model.backbone, total_steps, steps_per_epoch, t.batch_size, peak_lr,
             precision.label, device)
    loader = build_pretrain_loader(dataset, t.batch_size, t.seed, start_step, total_steps, cfg.data.num_workers,
                                   pin_memory=device.type == "cuda")
    writer = MetricsWriter(run_dir, start_step, t.tensorboard)
    bar = Progress(total_steps, start_step, t.progress, f"{cfg.method.name}")
    ckpt_dir = run_dir / "checkpoints"

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_dir, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "rng": capture_rng(), "step": step, "config": to_dict(cfg), "skipped_files": sorted(skipped),
            "versions": {"pixelssl": __version__, "torch": str(torch.__version__)},
        }, step, t.keep_checkpoints)

    model.train()
    first_loss = last_loss = float("nan")
    window_loss, window_steps, window_wait = 0.0, 0, 0.0
    started = window_start = time.perf_counter()
    wait_start = time.perf_counter()
    step = start_step
    try:
        for step, batch in enumerate(loader, start=start_step):
            window_wait += time.perf_counter() - wait_start
            for path in batch.pop("skipped"):
                if path not in skipped:
                    skipped.add(path)
                    log.warning("skipped unreadable image %s", path)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            for key in ("view1", "view2"):
                batch[key] = batch[key].contiguous(memory_format=memory_format)

            lr = lr_at(step, total_steps, peak_lr, warmup)
            set_lr(optimizer, lr)
            momentum = model.momentum_at(step, total_steps) if model.has_teacher else 0.0
            if model.has_teacher:
                model.momentum_update(momentum)  # before keys are computed, as the PixPro release
            with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.enabled):
                out = model(batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                last = ckpt_dir / "last.pt"
                kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
                raise TrainingDiverged(f"loss became {loss.item()} at step {step}; training stopped ({kept}); "
                                       f"try a lower train.base_lr or train.grad_clip")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            scaler.step(optimizer)
            scaler.update()

            value = float(loss.detach())
            if step == start_step:
                first_loss = value
            window_loss, window_steps, last_loss = window_loss + value, window_steps + 1, value
            done = step + 1
            if done % t.log_every == 0 or done == total_steps or step == start_step:
                elapsed = time.perf_counter() - window_start
                record = {k: float(v.detach()) for k, v in out.items()}
                record.update(loss=window_loss / window_steps, lr=lr, momentum=momentum, epoch=done / steps_per_epoch,
                              img_per_s=window_steps * t.batch_size / max(elapsed, 1e-9),
                              data_wait=window_wait / max(elapsed, 1e-9))
                writer.write(done, record)
                bar.update(done, f"loss {record['loss']:.4f}  lr {lr:.3g}  {record['img_per_s']:.1f} img/s")
                window_loss, window_steps, window_wait, window_start = 0.0, 0, 0.0, time.perf_counter()
            if done % t.checkpoint_every == 0 or done == total_steps:
                checkpoint(done)
            wait_start = time.perf_counter()
    finally:
        bar.close()
        writer.close()

    seconds = time.perf_counter() - started
    backbone_path = run_dir / "backbone.safetensors"
    save_backbone(model.backbone, backbone_path)
    if skipped:
        log.warning("%d unreadable image(s) were skipped in total", len(skipped))
    trained = total_steps - start_step
    log.info("finished %d steps in %.1f s; backbone written to %s", trained, seconds, backbone_path)
    return PretrainResult(run_dir, total_steps, first_loss, last_loss, seconds,
                          trained * t.batch_size / max(seconds, 1e-9), backbone_path, len(skipped))
