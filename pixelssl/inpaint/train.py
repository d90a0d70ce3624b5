"""Training the DeepFill v1 inpainting model on any image folder: one readable loop with exact resume.

prepare the run (config, data, networks, Adam for generator and critics, maybe a checkpoint) -> each step:
``critic_steps`` critic updates (WGAN-GP masked by the hole), each on a fresh batch of random crops with its own
seeded boxes and holes and a new completion by the generator (no gradients), as the release's secondary trainer
runs the whole graph per critic step; then one generator update on a batch of its own -> log / images / held-out
hole L1 / checkpoint -> export ``generator.safetensors``. ``train.critic_batches=reuse`` instead gives every critic
step the generator step's batch and completion (one batch per step).

Every random draw (data order, crops, masks, penalty interpolation) comes from generators seeded by
(seed, draw) or (seed, epoch, index), so a resumed run repeats the uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF
from torchvision.utils import make_grid

from pixelssl import __version__
from pixelssl.config import to_dict
from pixelssl.data.loader import StepBatchSampler, build_image_source, sample_seed
from pixelssl.engine.checkpoint import save_checkpoint
from pixelssl.engine.logger import MetricsWriter, Progress
from pixelssl.engine.run import start_run, timestamped
from pixelssl.engine.runtime import capture_rng, resolve_device, restore_rng, seed_everything
from pixelssl.errors import DataError, TrainingDiverged
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.losses import InpaintLoss
from pixelssl.inpaint.masks import sample_training_masks
from pixelssl.inpaint.networks import InpaintCritics, InpaintGenerator, parameter_count
from pixelssl.io import save_weights

log = logging.getLogger(__name__)

WEIGHTS_FILE = "generator.safetensors"
# Keys that may change when resuming: they do not alter the computation.
RESUME_SAFE_KEYS = {"data.num_workers", "train.progress", "train.log_every", "train.checkpoint_every",
                    "train.keep_checkpoints", "train.tensorboard", "train.threads", "train.image_every",
                    "train.eval_every", "train.time_budget", "train.max_steps"}
MASK_STREAM, VAL_MASK_SEED = 7, 12345


# ------------------------------------------------------------------------------------------------------- data
def to_signed(image: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the release's ``x / 127.5 - 1``)."""
    return image.float() / 127.5 - 1


def to_unit(image: Tensor) -> Tensor:
    """float [-1, 1] -> [0, 1]."""
    return ((image + 1) / 2).clamp(0, 1)


def fit_short_side(image: Tensor, size: int) -> Tensor:
    """Upscale (antialiased bilinear) so the shorter side is at least ``size``; larger images are left alone."""
    height, width = image.shape[-2:]
    if min(height, width) >= size:
        return image
    scale = size / min(height, width)
    return TF.resize(image, [max(size, round(height * scale)), max(size, round(width * scale))], antialias=True)


class RandomCrops(Dataset):
    """Item (epoch, index) -> a random ``size`` x ``size`` crop of image ``index``, from that item's own seed."""

    def __init__(self, source: Any, size: int, seed: int) -> None:
        self.source, self.size, self.seed = source, size, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        from pixelssl.data.datasets import load_with_fallback

        epoch, index = item
        image, skipped = load_with_fallback(self.source, index)
        image = fit_short_side(image, self.size)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index, 0))
        top = int(torch.randint(image.shape[1] - self.size + 1, (), generator=generator))
        left = int(torch.randint(image.shape[2] - self.size + 1, (), generator=generator))
        return {"image": image[:, top:top + self.size, left:left + self.size].contiguous(), "skipped": skipped}


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([s["image"] for s in samples]), "skipped": [p for s in samples for p in s["skipped"]]}


def held_out_images(cfg: InpaintConfig) -> Tensor | None:
    """The fixed held-out images (uint8, centre crops of ``image_size``), or None when there are none."""
    d = cfg.data
    if d.val_root:
        from pixelssl.data.datasets import ImageFolder

        source = ImageFolder(d.val_root)
    elif not d.root:
        from pixelssl.data.synthetic import SyntheticScenes

        syn = d.synthetic
        source = SyntheticScenes(d.val_images, size=syn.size, num_classes=syn.num_classes, seed=syn.seed, split="val")
    else:
        return None
    images = [TF.center_crop(fit_short_side(source.load(i), d.image_size), [d.image_size] * 2)
              for i in range(min(d.val_images, len(source)))]
    return torch.stack(images)


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


def default_run_name(cfg: InpaintConfig) -> str:
    return timestamped("inpaint" if cfg.model.contextual_attention else "inpaint_no_ca")


def train_inpainting(cfg: InpaintConfig | None = None, resume: str | Path | None = None,
                     overrides: list[str] | None = None) -> InpaintResult:
    """Train the generator (and critics) as configured; ``resume`` continues a run exactly where it stopped."""
    cfg, state, run_dir = start_run(InpaintConfig, cfg, resume, overrides, RESUME_SAFE_KEYS, default_run_name)
    t, m, size = cfg.train, cfg.mask, cfg.data.image_size
    if t.threads > 0:
        torch.set_num_threads(t.threads)
    seed_everything(t.seed)
    device = resolve_device(t.device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format

    source = build_image_source(cfg.data)
    if len(source) < t.batch_size:
        raise DataError(f"the training set has {len(source)} images, fewer than one batch "
                        f"(train.batch_size={t.batch_size})")
    generator = build_generator(cfg.model).to(device, memory_format=memory_format)
    use_critics = cfg.loss.gan_alpha > 0
    critics = InpaintCritics(size, m.box_size, cfg.model.critic_cnum, cfg.model.padding,
                             cfg.model.init).to(device, memory_format=memory_format)
    loss_fn = InpaintLoss(m.box_size, cfg.loss.gamma, cfg.loss.l1_alpha, cfg.loss.coarse_l1_alpha, cfg.loss.ae_alpha,
                          cfg.loss.gan_alpha, cfg.loss.global_wgan_alpha, cfg.loss.gp_lambda).to(device)
    g_opt = torch.optim.Adam(generator.parameters(), lr=t.lr, betas=tuple(t.betas))
    d_opt = torch.optim.Adam(critics.parameters(), lr=t.lr, betas=tuple(t.betas))
    start_step, skipped, history = 0, set(), []
    if state is not None:
        generator.load_state_dict(state["generator"])
        critics.load_state_dict(state["critics"])
        g_opt.load_state_dict(state["g_opt"])
        d_opt.load_state_dict(state["d_opt"])
        restore_rng(state["rng"])
        start_step, skipped = int(state["step"]), set(state.get("skipped_files", []))
        history = [tuple(x) for x in state.get("held_out_l1", [])]

    val_images = held_out_images(cfg)
    val_masks = None
    if val_images is not None:
        val_gen = torch.Generator().manual_seed(VAL_MASK_SEED)
        val_masks = sample_training_masks(val_images.shape[0], size, size, m.kind, m.box_size, m.max_delta,
                                          val_gen, m.margin)[1]
    evaluate = lambda: hole_l1(generator, val_images, val_masks, device, memory_format)  # noqa: E731
    if val_images is not None and start_step == 0:
        history.append((0, evaluate()))

    # DeepFill v1 release: the critics' secondary trainer runs the graph (new batch, holes, completion) per step.
    fresh = use_critics and t.critic_batches == "fresh" and t.critic_steps > 0
    per_step = 1 + t.critic_steps if fresh else 1  # batches drawn per generator step: critics' first, then its own
    dataset = RandomCrops(source, size, t.seed)
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(len(dataset), t.batch_size, t.seed,
                                                                start_step * per_step, t.max_steps * per_step),
                        num_workers=cfg.data.num_workers, collate_fn=_collate,
                        generator=torch.Generator().manual_seed(t.seed))
    log.info("run %s: DeepFill v1%s, generator %.2fM parameters, %d steps, batch %d at %dpx, %d critic steps, on %s",
             run_dir, "" if cfg.model.contextual_attention else " without contextual attention",
             parameter_count(generator) / 1e6, t.max_steps, t.batch_size, size, t.critic_steps if use_critics else 0,
             device)
    writer = MetricsWriter(run_dir, start_step, t.tensorboard)
    images_writer = None
    if t.tensorboard and t.image_every > 0:
        from torch.utils.tensorboard import SummaryWriter

        images_writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)
    bar = Progress(t.max_steps, start_step, t.progress, "inpaint")
    ckpt_dir = run_dir / "checkpoints"

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_dir, {
            "generator": generator.state_dict(), "critics": critics.state_dict(), "g_opt": g_opt.state_dict(),
            "d_opt": d_opt.state_dict(), "rng": capture_rng(), "step": step, "config": to_dict(cfg),
            "skipped_files": sorted(skipped), "held_out_l1": [list(x) for x in history],
        }, step, t.keep_checkpoints)

    generator.train()
    critics.train()
    started = window_start = time.perf_counter()
    window_steps, done = 0, start_step
    record: dict[str, float] = {}
    batches = iter(loader)

    def draw(index: int) -> tuple[Tensor, Tensor, Tensor, torch.Generator]:
        """Batch number ``index`` of the run: images in [-1, 1], boxes, holes, and the RNG its critic step goes on with."""
        batch = next(batches)
        for path in batch["skipped"]:
            if path not in skipped:
                skipped.add(path)
                log.warning("skipped unreadable image %s", path)
        rng = torch.Generator().manual_seed(sample_seed(t.seed, index, 0, MASK_STREAM))
        real = to_signed(batch["image"]).to(device).contiguous(memory_format=memory_format)
        boxes, mask = sample_training_masks(real.shape[0], size, size, m.kind, m.box_size, m.max_delta, rng,
                                            m.margin)
        return real, boxes.to(device), mask.to(device), rng

    def critic_update(real: Tensor, completed: Tensor, mask: Tensor, boxes: Tensor,
                      rng: torch.Generator) -> dict[str, Tensor]:
        terms = loss_fn.critic(real, completed, mask, boxes, critics, rng)
        d_opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        d_opt.step()
        return terms

    try:
        for step in range(start_step, t.max_steps):
            d_terms: dict[str, Tensor] = {}
            if fresh:  # DeepFill v1: critic updates first, each on a new batch and completion, then the generator
                critics.requires_grad_(True)
                for k in range(t.critic_steps):
                    c_real, c_boxes, c_mask, c_rng = draw(step * per_step + k)
                    with torch.no_grad():
                        c_refined = generator(c_real, c_mask).refined
                    d_terms = critic_update(c_real, c_refined * c_mask + c_real * (1 - c_mask), c_mask, c_boxes, c_rng)
                critics.requires_grad_(False)
            real, boxes, mask, rng = draw(step * per_step + per_step - 1)
            want_images = images_writer is not None and (step + 1) % t.image_every == 0
            out = generator(real, mask, return_flow=want_images)
            completed = out.refined * mask + real * (1 - mask)

            if use_critics and not fresh:  # reuse: every critic step sees this step's batch and completion
                critics.requires_grad_(True)
                for _ in range(t.critic_steps):
                    d_terms = critic_update(real, completed, mask, boxes, rng)
                critics.requires_grad_(False)
            g_terms = loss_fn.generator(real, out.coarse, out.refined, mask, boxes, critics if use_critics else None)
            if not torch.isfinite(g_terms["total"]):
                last = ckpt_dir / "last.pt"
                kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
                raise TrainingDiverged(f"generator loss became {g_terms['total'].item()} at step {step}; "
                                       f"training stopped ({kept}); try a lower train.lr")
            g_opt.zero_grad(set_to_none=True)
            g_terms["total"].backward()
            g_opt.step()

            done, window_steps = step + 1, window_steps + 1
            out_of_time = t.time_budget > 0 and time.perf_counter() - started >= t.time_budget
            last_step = done == t.max_steps or out_of_time
            if want_images:
                images_writer.add_image("inpaint/input_coarse_refined_flow",
                                        image_grid(real, mask, out.coarse, out.refined, out.flow), done)
            if val_images is not None and ((t.eval_every and done % t.eval_every == 0) or last_step):
                history.append((done, evaluate()))
                writer.write(done, {"held_out_hole_l1": history[-1][1]})
            if done % t.log_every == 0 or last_step or step == start_step:
                elapsed = time.perf_counter() - window_start
                record = {f"g_{k}" if k == "total" else k: float(v.detach()) for k, v in g_terms.items()}
                record.update({"d_total" if k == "total" else k: float(v.detach()) for k, v in d_terms.items()})
                record["img_per_s"] = window_steps * t.batch_size / max(elapsed, 1e-9)
                writer.write(done, record)
                bar.update(done, f"loss {record['g_total']:.4f}  {record['img_per_s']:.2f} img/s")
                window_steps, window_start = 0, time.perf_counter()
            if done % t.checkpoint_every == 0 or last_step:
                checkpoint(done)
            if out_of_time:
                log.info("train.time_budget of %.0f s reached at step %d", t.time_budget, done)
                break
    finally:
        bar.close()
        writer.close()
        if images_writer is not None:
            images_writer.close()

    seconds = time.perf_counter() - started
    weights_path = run_dir / WEIGHTS_FILE
    save_generator(generator, cfg.model, weights_path)
    if skipped:
        log.warning("%d unreadable image(s) were skipped in total", len(skipped))
    trained = done - start_step
    log.info("finished at step %d (%.1f s); generator written to %s", done, seconds, weights_path)
    if history:
        log.info("held-out hole L1: %.4f (step %d) -> %.4f (step %d)", history[0][1], history[0][0],
                 history[-1][1], history[-1][0])
    return InpaintResult(run_dir, done, weights_path, history, seconds,
                         trained * t.batch_size / max(seconds, 1e-9), parameter_count(generator))
