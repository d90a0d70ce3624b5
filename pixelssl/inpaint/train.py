"""Training the DeepFill v1 inpainting model on any image folder, read top to bottom, with exact resume.

``train_inpainting`` -> ``_set_up`` (config, data, networks, Adam for generator and critics, maybe a checkpoint)
-> ``_train``: each step ``_train_step`` (``critic_steps`` critic updates, WGAN-GP masked by the hole, each on a
fresh batch of random crops with its own seeded boxes and holes and a new completion by the generator (no
gradients), as the release's secondary trainer runs the whole graph per critic step; then one generator update on
a batch of its own), then ``_bookkeeping`` (images / held-out hole L1 / metric line / checkpoint / stop signals)
-> ``_finish`` (export ``generator.safetensors``). ``train.critic_batches=reuse`` instead gives every critic step
the generator step's batch and completion (one batch per step).

The run machinery is the engine's, as pre-training's: one writer per run directory (the run lock), stop signals
turned into a checkpoint and exit 75, the NaN/inf policy (``train.nonfinite``: a non-finite loss or gradient stops
the run, or drops that one critic / generator update), and no broken model ever checkpointed.

Every random draw (data order, crops, masks, penalty interpolation) comes from generators seeded by
(seed, draw) or (seed, epoch, index), so a resumed run repeats the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader
from torchvision.utils import make_grid

from pixelssl import __version__
from pixelssl.config import to_dict
from pixelssl.data.loader import StepBatchSampler, build_image_source, sample_seed
from pixelssl.engine.checkpoint import last_checkpoint_note, save_checkpoint
from pixelssl.engine.distributed import plan_batches
from pixelssl.engine.lock import RunLock
from pixelssl.engine.logger import RunLogger, SkippedFiles
from pixelssl.engine.numerics import NonFiniteGuard, assert_finite, gradient_problem
from pixelssl.engine.preemption import StopRequest
from pixelssl.engine.run import start_run, timestamped
from pixelssl.engine.runtime import capture_rng, prepare, resolve_device, restore_rng
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.images import RandomCrops, collate_crops, held_out_images, to_signed, to_unit
from pixelssl.inpaint.losses import InpaintLoss
from pixelssl.inpaint.masks import sample_training_masks
from pixelssl.inpaint.networks import InpaintCritics, InpaintGenerator, parameter_count
from pixelssl.io import save_weights

log = logging.getLogger(__name__)

WEIGHTS_FILE = "generator.safetensors"
# Keys that may change when resuming: they do not alter the computation.
RESUME_SAFE_KEYS = {"data.num_workers", "train.progress", "train.log_every", "train.checkpoint_every",
                    "train.keep_checkpoints", "train.tensorboard", "train.threads", "train.image_every",
                    "train.eval_every", "train.time_budget", "train.max_steps", "train.nonfinite",
                    "train.max_nonfinite_skips"}
ADVICE = "try a lower train.lr, or train.nonfinite=skip"
MASK_STREAM, VAL_MASK_SEED = 7, 12345


# ---------------------------------------------------------------------------------------------------- models
# Weights saved before model.downsample / model.padding existed were trained with these behaviours.
LEGACY_MODEL_KEYS = {"downsample": "stride", "padding": "symmetric"}


def build_generator(model_cfg: Any) -> InpaintGenerator:
    """The generator described by a ``model`` config section (or the dict saved with the weights).

    A saved dict without ``downsample`` / ``padding`` comes from weights trained before those keys existed, with the
    PyTorch-style behaviour: it gets that behaviour back (``LEGACY_MODEL_KEYS``). Loaded weights replace the
    initialisation, so the dict's ``init`` is not needed.
    """
    if isinstance(model_cfg, dict):
        get = lambda k: model_cfg.get(k, LEGACY_MODEL_KEYS.get(k, "glorot" if k == "init" else None))  # noqa: E731
    else:
        get = lambda k: getattr(model_cfg, k)  # noqa: E731
    return InpaintGenerator(cnum=int(get("cnum")), use_contextual_attention=bool(get("contextual_attention")),
                            ksize=int(get("ca_ksize")), rate=int(get("ca_rate")), fuse_k=int(get("ca_fuse_k")),
                            softmax_scale=float(get("ca_softmax_scale")), memory_budget=int(get("ca_memory_budget")),
                            downsample=str(get("downsample")), padding=str(get("padding")), init=str(get("init")))


def save_generator(generator: InpaintGenerator, model_cfg: Any, path: Path) -> None:
    """Generator weights as safetensors; the model config rides along in the metadata (``pixelssl_inpaint``)."""
    meta = {"pixelssl_inpaint": json.dumps(to_dict(model_cfg) if not isinstance(model_cfg, dict) else model_cfg),
            "pixelssl_version": __version__}
    save_weights(generator.state_dict(), path, metadata=meta)


@torch.no_grad()
def hole_l1(generator: InpaintGenerator, images: Tensor, masks: Tensor, device: torch.device,
            memory_format: torch.memory_format, batch_size: int = 8) -> float:
    """Mean absolute error (in [0, 1] units) over the hole pixels of the completed held-out images."""
    was_training = generator.training
    generator.eval()
    error = count = 0.0
    for start in range(0, images.shape[0], batch_size):
        real = to_signed(images[start:start + batch_size]).to(device).contiguous(memory_format=memory_format)
        mask = masks[start:start + batch_size].to(device)
        refined = generator(real, mask).refined
        error += float(((refined - real).abs() / 2 * mask).sum())
        count += float(mask.sum()) * real.shape[1]
    generator.train(was_training)
    return error / max(count, 1.0)


def image_grid(real: Tensor, mask: Tensor, coarse: Tensor, refined: Tensor, flow: Tensor | None,
               rows: int = 4) -> Tensor:
    """TensorBoard grid, one sample per row: input with grey hole, coarse, completed refined, attention flow."""
    n = min(rows, real.shape[0])
    pick = lambda x: to_unit(x[:n].float()).cpu()  # noqa: E731
    incomplete = pick(real * (1 - mask))
    completed = pick(refined * mask + real * (1 - mask))
    flow_img = torch.ones_like(incomplete) if flow is None else torch.nn.functional.interpolate(
        flow[:n].float().cpu(), size=real.shape[-2:], mode="nearest")
    tiles = torch.stack([incomplete, pick(coarse), completed, flow_img], dim=1).flatten(0, 1)
    return make_grid(tiles, nrow=4, padding=2)


# ------------------------------------------------------------------------------------------------------ run
@dataclass
class InpaintResult:
    run_dir: Path
    steps: int
    weights_path: Path
    held_out_l1: list[tuple[int, float]]  # (step, hole L1) at each evaluation, the initial one at step 0
    seconds: float
    images_per_second: float
    generator_parameters: int


@dataclass
class _Run:
    """An inpainting run as ``_set_up`` builds it."""

    cfg: InpaintConfig
    run_dir: Path
    device: torch.device
    memory_format: torch.memory_format
    generator: InpaintGenerator
    critics: InpaintCritics
    loss_fn: InpaintLoss
    g_opt: Optimizer
    d_opt: Optimizer
    held_out: tuple[Tensor, Tensor] | None  # fixed images and holes for the hole L1, if any
    history: list[tuple[int, float]]
    guard: NonFiniteGuard
    skipped: SkippedFiles
    start_step: int
    loader: DataLoader | None = field(default=None, repr=False)  # the batches of the steps still to run
    batches: Iterator[dict[str, Any]] | None = field(default=None, repr=False)  # its iterator: one batch per draw

    @property
    def nets(self) -> nn.Module:
        return nn.ModuleDict({"generator": self.generator, "critics": self.critics})

    @property
    def use_critics(self) -> bool:
        return self.cfg.loss.gan_alpha > 0

    @property
    def fresh(self) -> bool:  # DeepFill v1 release: the critics' trainer runs the graph (new batch) per step
        t = self.cfg.train
        return self.use_critics and t.critic_batches == "fresh" and t.critic_steps > 0

    @property
    def per_step(self) -> int:  # batches drawn per generator step: the critics' first, then its own
        return 1 + self.cfg.train.critic_steps if self.fresh else 1

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"


def default_run_name(cfg: InpaintConfig) -> str:
    return timestamped("inpaint" if cfg.model.contextual_attention else "inpaint_no_ca")


def train_inpainting(cfg: InpaintConfig | None = None, resume: str | Path | None = None,
                     overrides: list[str] | None = None) -> InpaintResult:
    """Train the generator (and critics) as configured; ``resume`` continues a run exactly where it stopped."""
    cfg, state, run_dir = start_run(InpaintConfig, cfg, resume, overrides, RESUME_SAFE_KEYS, default_run_name)
    run = _set_up(cfg, state, run_dir)
    t = cfg.train
    started = time.perf_counter()
    # One writer per run directory; SIGTERM / SIGINT / SIGUSR1 -> checkpoint after this step, then Preempted.
    with RunLock(run_dir), StopRequest() as stop:
        logger = RunLogger(run_dir, run.start_step, t.max_steps, t.log_every, t.batch_size,
                           tensorboard=t.tensorboard, progress=t.progress, description="inpaint")
        try:
            done = _train(run, logger, stop, started)
        finally:
            logger.close()
    return _finish(run, done, time.perf_counter() - started)


# ------------------------------------------------------------------------------------------------------ set-up
def _set_up(cfg: InpaintConfig, state: dict | None, run_dir: Path) -> _Run:
    """Process, data, networks and optimisers (restored from ``state`` when resuming), the held-out set."""
    t, m, size = cfg.train, cfg.mask, cfg.data.image_size
    prepare(t.threads, t.seed)
    device = resolve_device(t.device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    source = build_image_source(cfg.data)
    plan_batches(len(source), t.batch_size, min_per_process=1)  # at least one batch
    generator = build_generator(cfg.model).to(device, memory_format=memory_format)
    critics = InpaintCritics(size, m.box_size, cfg.model.critic_cnum, cfg.model.padding,
                             cfg.model.init).to(device, memory_format=memory_format)
    loss_fn = InpaintLoss(m.box_size, cfg.loss.gamma, cfg.loss.l1_alpha, cfg.loss.coarse_l1_alpha, cfg.loss.ae_alpha,
                          cfg.loss.gan_alpha, cfg.loss.global_wgan_alpha, cfg.loss.gp_lambda).to(device)
    g_opt = torch.optim.Adam(generator.parameters(), lr=t.lr, betas=tuple(t.betas))
    d_opt = torch.optim.Adam(critics.parameters(), lr=t.lr, betas=tuple(t.betas))
    start_step, skipped, history, skips = 0, [], [], 0
    if state is not None:
        for part, module in (("generator", generator), ("critics", critics), ("g_opt", g_opt), ("d_opt", d_opt)):
            module.load_state_dict(state[part])
        restore_rng(state["rng"])
        start_step, skipped = int(state["step"]), list(state.get("skipped_files", []))
        history = [tuple(x) for x in state.get("held_out_l1", [])]
        skips = int(state.get("nonfinite_skips", 0))

    val_images, held_out = held_out_images(cfg), None
    if val_images is not None:
        val_gen = torch.Generator().manual_seed(VAL_MASK_SEED)
        held_out = val_images, sample_training_masks(val_images.shape[0], size, size, m.kind, m.box_size,
                                                     m.max_delta, val_gen, m.margin)[1]
    guard = NonFiniteGuard(t.nonfinite, t.max_nonfinite_skips, skips, advice=ADVICE, unit="update")
    run = _Run(cfg, run_dir, device, memory_format, generator, critics, loss_fn, g_opt, d_opt, held_out, history,
               guard, SkippedFiles(skipped), start_step)
    if held_out is not None and start_step == 0:
        history.append((0, _held_out_l1(run)))
    run.loader = DataLoader(RandomCrops(source, size, t.seed), collate_fn=collate_crops, num_workers=cfg.data.num_workers,
                            batch_sampler=StepBatchSampler(len(source), t.batch_size, t.seed,
                                                           start_step * run.per_step, t.max_steps * run.per_step),
                            generator=torch.Generator().manual_seed(t.seed))
    log.info("run %s: DeepFill v1%s, generator %.2fM parameters, %d steps, batch %d at %dpx, %d critic steps, on %s",
             run_dir, "" if cfg.model.contextual_attention else " without contextual attention",
             parameter_count(generator) / 1e6, t.max_steps, t.batch_size, size,
             t.critic_steps if run.use_critics else 0, device)
    return run


def _held_out_l1(run: _Run) -> float:
    images, masks = run.held_out
    return hole_l1(run.generator, images, masks, run.device, run.memory_format)


# ------------------------------------------------------------------------------------------------------ steps
def _train(run: _Run, logger: RunLogger, stop: StopRequest, started: float) -> int:
    """Every remaining step (until ``train.time_budget`` runs out): a training step, then its bookkeeping."""
    t = run.cfg.train
    run.generator.train()
    run.critics.train()
    run.batches = iter(run.loader)
    done = run.start_step
    for step in range(run.start_step, t.max_steps):
        want_images = logger.tensorboard and t.image_every > 0 and (step + 1) % t.image_every == 0
        g_terms, d_terms, grid = _train_step(run, step, want_images)
        done = step + 1
        logger.window.step_done()
        out_of_time = t.time_budget > 0 and time.perf_counter() - started >= t.time_budget
        _bookkeeping(run, logger, stop, done, done == t.max_steps or out_of_time, g_terms, d_terms, grid)
        if out_of_time:
            log.info("train.time_budget of %.0f s reached at step %d", t.time_budget, done)
            break
    return done


def _train_step(run: _Run, step: int, want_images: bool) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor | None]:
    """The critic updates, then one generator update: (generator terms, last critic terms, TensorBoard grid)."""
    t, generator = run.cfg.train, run.generator
    run.guard.before_forward(run.nets)
    d_terms: dict[str, Tensor] = {}
    if run.fresh:  # DeepFill v1: critic updates first, each on a new batch and completion, then the generator
        run.critics.requires_grad_(True)
        for k in range(t.critic_steps):
            c_real, c_boxes, c_mask, c_rng = _draw(run, step * run.per_step + k)
            with torch.no_grad():
                c_refined = generator(c_real, c_mask).refined
            d_terms = _critic_update(run, step, c_real, c_refined * c_mask + c_real * (1 - c_mask), c_mask, c_boxes,
                                     c_rng)
        run.critics.requires_grad_(False)
    real, boxes, mask, rng = _draw(run, step * run.per_step + run.per_step - 1)
    out = generator(real, mask, return_flow=want_images)
    completed = out.refined * mask + real * (1 - mask)
    if run.use_critics and not run.fresh:  # reuse: every critic step sees this step's batch and completion
        run.critics.requires_grad_(True)
        for _ in range(t.critic_steps):
            d_terms = _critic_update(run, step, real, completed, mask, boxes, rng)
        run.critics.requires_grad_(False)
    g_terms = run.loss_fn.generator(real, out.coarse, out.refined, mask, boxes, run.critics if run.use_critics else None)
    _update(run, step, "generator", g_terms["total"], run.g_opt, generator)
    grid = image_grid(real, mask, out.coarse, out.refined, out.flow) if want_images else None
    return g_terms, d_terms, grid


def _draw(run: _Run, index: int) -> tuple[Tensor, Tensor, Tensor, torch.Generator]:
    """Batch number ``index`` of the run: images in [-1, 1], boxes, holes, and the RNG its critic step goes on with."""
    m, size = run.cfg.mask, run.cfg.data.image_size
    batch = next(run.batches)
    run.skipped.note(batch["skipped"])
    rng = torch.Generator().manual_seed(sample_seed(run.cfg.train.seed, index, 0, MASK_STREAM))
    real = to_signed(batch["image"]).to(run.device).contiguous(memory_format=run.memory_format)
    boxes, mask = sample_training_masks(real.shape[0], size, size, m.kind, m.box_size, m.max_delta, rng, m.margin)
    return real, boxes.to(run.device), mask.to(run.device), rng


def _critic_update(run: _Run, step: int, real: Tensor, completed: Tensor, mask: Tensor, boxes: Tensor,
                   rng: torch.Generator) -> dict[str, Tensor]:
    terms = run.loss_fn.critic(real, completed, mask, boxes, run.critics, rng)
    _update(run, step, "critic", terms["total"], run.d_opt, run.critics)
    return terms


def _update(run: _Run, step: int, name: str, loss: Tensor, optimizer: Optimizer, net: nn.Module) -> None:
    """Backward and step, unless the loss or the gradients are not finite: then ``train.nonfinite`` stops the run
    or drops this update."""
    value = float(loss.detach())
    problem = None if math.isfinite(value) else f"{name} loss became {value}"
    optimizer.zero_grad(set_to_none=True)
    if problem is None:
        loss.backward()
        problem = gradient_problem([p for p in net.parameters() if p.requires_grad], optimizer)
    if problem is None:
        optimizer.step()
    else:  # the unused gradients are cleared by the next update's zero_grad
        run.guard.bad_step(run.nets, step, problem, last_checkpoint_note(run.ckpt_dir))


# ------------------------------------------------------------------------------------------------ bookkeeping
def _bookkeeping(run: _Run, logger: RunLogger, stop: StopRequest, done: int, last: bool, g_terms: dict[str, Tensor],
                 d_terms: dict[str, Tensor], grid: Tensor | None) -> None:
    """After step ``done``: images, the held-out hole L1, the metric line, a checkpoint, a stop signal."""
    t = run.cfg.train
    if grid is not None:
        logger.image("inpaint/input_coarse_refined_flow", grid, done)
    if run.held_out is not None and ((t.eval_every and done % t.eval_every == 0) or last):
        run.history.append((done, _held_out_l1(run)))
        logger.write(done, {"held_out_hole_l1": run.history[-1][1]})
    if logger.due(done, last):
        record = {f"g_{k}" if k == "total" else k: float(v.detach()) for k, v in g_terms.items()}
        record.update({"d_total" if k == "total" else k: float(v.detach()) for k, v in d_terms.items()})
        record.update(img_per_s=logger.window.rates()["img_per_s"], nonfinite_skips=run.guard.skips)
        logger.line(done, record, f"loss {record['g_total']:.4f}  {record['img_per_s']:.2f} img/s")
    saved = done % t.checkpoint_every == 0 or last
    if saved:
        _checkpoint(run, done)
    if not last and stop.agreed(run.device):
        if not saved:
            _checkpoint(run, done)
        raise stop.preempted(done, t.max_steps, f"pixelssl inpaint train --resume {run.run_dir}")


def _checkpoint(run: _Run, step: int) -> None:
    assert_finite(run.nets, step, run.ckpt_dir)  # never overwrite a good checkpoint with a broken model
    save_checkpoint(run.ckpt_dir, {
        "generator": run.generator.state_dict(), "critics": run.critics.state_dict(), "g_opt": run.g_opt.state_dict(),
        "d_opt": run.d_opt.state_dict(), "rng": capture_rng(), "step": step, "config": to_dict(run.cfg),
        "skipped_files": run.skipped.gathered(), "held_out_l1": [list(x) for x in run.history],
        "nonfinite_skips": run.guard.skips,
    }, step, run.cfg.train.keep_checkpoints)


def _finish(run: _Run, done: int, seconds: float) -> InpaintResult:
    """Export the generator and say what the run did."""
    weights_path = run.run_dir / WEIGHTS_FILE
    save_generator(run.generator, run.cfg.model, weights_path)
    run.skipped.report_total(len(run.skipped.paths))
    log.info("finished at step %d (%.1f s); generator written to %s", done, seconds, weights_path)
    history = run.history
    if history:
        log.info("held-out hole L1: %.4f (step %d) -> %.4f (step %d)", history[0][1], history[0][0],
                 history[-1][1], history[-1][0])
    return InpaintResult(run.run_dir, done, weights_path, history, seconds,
                         (done - run.start_step) * run.cfg.train.batch_size / max(seconds, 1e-9),
                         parameter_count(run.generator))
