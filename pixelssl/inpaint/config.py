"""Typed config of inpainting training (``pixelssl inpaint train``): schema, defaults from the DeepFill v1 release."""

from __future__ import annotations

from dataclasses import dataclass

from pixelssl.config import SyntheticConfig, choice, opt, register_validator, require, sub


@dataclass
class InpaintRunConfig:
    name: str = opt("", "run directory name under output_dir; empty = inpaint_<timestamp> (inpaint_no_ca_... without CA)")
    output_dir: str = opt("runs", "parent folder of run directories")


@dataclass
class InpaintDataConfig:
    root: str = opt("", "folder of training images (searched recursively); empty = built-in synthetic scenes")
    val_root: str = opt("", "folder of held-out images for the hole L1; empty = synthetic val scenes (none with data.root)")
    val_images: int = opt(16, "held-out images scored every train.eval_every steps (fixed seeded masks)")
    image_size: int = opt(256, "side of the random square training crops (smaller images are upscaled first)")
    num_workers: int = opt(0, "data-loader worker processes (0 = load in the training process)")
    synthetic: SyntheticConfig = sub(SyntheticConfig, "built-in synthetic scenes (used when root is empty)")


@dataclass
class InpaintMaskConfig:
    kind: str = opt("rect", "rect (release: the box shrunk by a random margin) | stroke (free-form) | mixed")
    box_size: int = opt(128, "side of the square hole box; the local critic sees this box (release: 128 at 256px)")
    max_delta: int = opt(32, "rect holes shrink by 0..max_delta/2 pixels per side inside the box (release: 32)")
    margin: int = opt(0, "keep boxes at least this many pixels from the image border")


@dataclass
class InpaintModelConfig:
    cnum: int = opt(32, "generator channel base (release: 32)")
    contextual_attention: bool = opt(True, "false = the no-contextual-attention ablation (same convs, layer skipped)")
    ca_ksize: int = opt(3, "contextual attention: background patch size at the downsampled resolution")
    ca_rate: int = opt(2, "contextual attention: downsampling rate for matching (raw patches are 2*rate)")
    ca_fuse_k: int = opt(3, "contextual attention: identity-kernel size of the score fusion (1 = off)")
    ca_softmax_scale: float = opt(10.0, "contextual attention: softmax scale")
    ca_memory_budget: int = opt(1 << 22, "contextual attention: score-matrix elements per chunk")
    downsample: str = opt("release", "release (TF1 nearest resize with align_corners=True, e.g. 64 -> 32 reads rows 0, 2, "
                          "..., 30, 33, ..., 63: contextual attention and the generator's mask) | stride (every "
                          "rate-th row and column)")
    padding: str = opt("same", "conv padding: same (TensorFlow 'SAME', as the release: a 3x3 stride-2 conv on an even "
                       "size pads 0 before, 1 after) | symmetric (PyTorch: 1 on both sides)")
    init: str = opt("glorot", "initial weights of generator and critics: glorot (TensorFlow's defaults, as the release: "
                    "Glorot-uniform weights, zero biases) | torch (PyTorch's defaults)")
    critic_cnum: int = opt(64, "critics' channel base (release: 64)")


@dataclass
class InpaintLossConfig:
    gamma: float = opt(0.9, "spatial discount of the hole L1 (release config: 0.9; the paper says 0.99)")
    l1_alpha: float = opt(1.2, "weight of the discounted hole L1")
    coarse_l1_alpha: float = opt(1.2, "weight of the coarse output inside the L1 and autoencoder terms")
    ae_alpha: float = opt(1.2, "weight of the autoencoder L1 on the known region")
    gan_alpha: float = opt(0.001, "weight of the WGAN generator terms (0 = no critics at all)")
    global_wgan_alpha: float = opt(1.0, "weight of the global critic relative to the local one")
    gp_lambda: float = opt(10.0, "gradient-penalty weight (penalty restricted to the hole)")


@dataclass
class InpaintTrainConfig:
    max_steps: int = opt(100000, "generator steps")
    time_budget: float = opt(0.0, "stop after this many seconds of training (0 = off); the last step is saved")
    batch_size: int = opt(16, "images per step (release: 16)")
    lr: float = opt(1e-4, "Adam learning rate of generator and critics (release: 1e-4)")
    betas: list = opt([0.5, 0.9], "Adam betas (release: 0.5, 0.9)")
    critic_steps: int = opt(5, "critic updates per generator update (release: 5)")
    critic_batches: str = opt("fresh", "fresh (release: each critic step draws a new batch, holes and a new completion) "
                              "| reuse (every critic step reuses the generator step's batch and completion)")
    nonfinite: str = opt("stop", "a NaN/inf loss or gradient: stop (the last checkpoint stays good) | skip (drop that "
                                 "critic or generator update, go on)", choices=("stop", "skip"))
    max_nonfinite_skips: int = opt(20, "with nonfinite=skip: stop once this many updates of the run were dropped", ge=0)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)")
    channels_last: bool = opt(True, "channels_last memory format for the networks")
    seed: int = opt(0, "seed of initialisation, data order, crops, masks and penalty interpolation")
    log_every: int = opt(10, "steps between metric lines in metrics.jsonl / TensorBoard")
    image_every: int = opt(200, "steps between TensorBoard image grids (input, coarse, refined, flow); 0 = off")
    eval_every: int = opt(0, "steps between held-out hole L1 evaluations (0 = only at the end)")
    checkpoint_every: int = opt(500, "steps between checkpoints (one is always written at the end)")
    keep_checkpoints: int = opt(2, "numbered checkpoints kept besides last.pt")
    tensorboard: bool = opt(True, "write TensorBoard event files into the run directory")
    progress: bool = opt(True, "show a progress bar")


@dataclass
class InpaintConfig:
    run: InpaintRunConfig = sub(InpaintRunConfig, "where the run is written")
    data: InpaintDataConfig = sub(InpaintDataConfig, "training and held-out images")
    mask: InpaintMaskConfig = sub(InpaintMaskConfig, "training holes")
    model: InpaintModelConfig = sub(InpaintModelConfig, "generator, contextual attention and critics")
    loss: InpaintLossConfig = sub(InpaintLossConfig, "loss weights")
    train: InpaintTrainConfig = sub(InpaintTrainConfig, "optimisation, logging and checkpoints")


def _validate(cfg: InpaintConfig) -> None:
    d, m, mo, lo, t = cfg.data, cfg.mask, cfg.model, cfg.loss, cfg.train
    require(d.image_size >= 32 and d.image_size % 16 == 0, "data.image_size",
            f"must be a multiple of 16 and >= 32 (got {d.image_size})")
    require(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    require(d.val_images >= 1, "data.val_images", "must be >= 1")
    require(d.synthetic.num_images >= 1, "data.synthetic.num_images", "must be >= 1")
    require(d.synthetic.size >= 16, "data.synthetic.size", "must be >= 16")
    choice(m.kind, "mask.kind", ("rect", "stroke", "mixed"))
    require(m.box_size >= 16 and m.box_size % 16 == 0, "mask.box_size", f"must be a multiple of 16 (got {m.box_size})")
    require(m.box_size + 2 * m.margin <= d.image_size, "mask.box_size",
            f"box {m.box_size} + 2 * margin {m.margin} must fit data.image_size {d.image_size}")
    require(0 <= m.max_delta < m.box_size, "mask.max_delta", f"must be in [0, box_size) (got {m.max_delta})")
    require(m.margin >= 0, "mask.margin", "must be >= 0")
    require(mo.cnum >= 2 and mo.cnum % 2 == 0, "model.cnum", f"must be an even number >= 2 (got {mo.cnum})")
    require(mo.ca_ksize >= 1 and mo.ca_ksize % 2 == 1, "model.ca_ksize", "must be a positive odd number")
    require(mo.ca_rate in (1, 2, 4), "model.ca_rate", f"must be 1, 2 or 4 (got {mo.ca_rate})")
    require(mo.ca_fuse_k >= 1 and mo.ca_fuse_k % 2 == 1, "model.ca_fuse_k", "must be a positive odd number")
    require(mo.ca_softmax_scale > 0, "model.ca_softmax_scale", "must be > 0")
    require(mo.ca_memory_budget >= 1, "model.ca_memory_budget", "must be >= 1")
    choice(mo.downsample, "model.downsample", ("release", "stride"))
    choice(mo.padding, "model.padding", ("same", "symmetric"))
    choice(mo.init, "model.init", ("glorot", "torch"))
    require(mo.critic_cnum >= 1, "model.critic_cnum", "must be >= 1")
    require(0 < lo.gamma <= 1, "loss.gamma", f"must be in (0, 1] (got {lo.gamma})")
    for key in ("l1_alpha", "coarse_l1_alpha", "ae_alpha", "gan_alpha", "global_wgan_alpha", "gp_lambda"):
        require(getattr(lo, key) >= 0, f"loss.{key}", "must be >= 0")
    require(t.max_steps >= 1, "train.max_steps", "must be >= 1")
    require(t.time_budget >= 0, "train.time_budget", "must be >= 0")
    require(t.batch_size >= 1, "train.batch_size", "must be >= 1")
    require(t.lr > 0, "train.lr", "must be > 0")
    require(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "train.betas",
            f"must be [beta1, beta2] in [0, 1) (got {list(t.betas)})")
    require(t.critic_steps >= 0, "train.critic_steps", "must be >= 0")
    choice(t.critic_batches, "train.critic_batches", ("fresh", "reuse"))
    require(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
            f"'{t.device}' is not auto, cpu, cuda or cuda:N")
    require(t.threads >= 0, "train.threads", "must be >= 0")
    for key in ("log_every", "checkpoint_every"):
        require(getattr(t, key) >= 1, f"train.{key}", "must be >= 1")
    for key in ("image_every", "eval_every", "keep_checkpoints"):
        require(getattr(t, key) >= 0, f"train.{key}", "must be >= 0")


register_validator(InpaintConfig, _validate)
