"""Typed config of inpainting training (``pixelssl inpaint train``): schema, defaults from the DeepFill v1 release."""

from __future__ import annotations

from dataclasses import dataclass

from pixelssl.config import SyntheticConfig, opt, register_validator, require, sub


@dataclass
class InpaintRunConfig:
    name: str = opt("", "run directory name under output_dir; empty = inpaint_<timestamp> (inpaint_no_ca_... without CA)")
    output_dir: str = opt("runs", "parent folder of run directories")


@dataclass
class InpaintSyntheticConfig(SyntheticConfig):
    """The synthetic scenes of pre-training, with the smaller scenes inpainting allows."""

    size: int = opt(128, "side of each synthetic scene in pixels", ge=16)


@dataclass
class InpaintDataConfig:
    root: str = opt("", "folder of training images (searched recursively); empty = built-in synthetic scenes")
    val_root: str = opt("", "folder of held-out images for the hole L1; empty = synthetic val scenes (none with data.root)")
    val_images: int = opt(16, "held-out images scored every train.eval_every steps (fixed seeded masks)", ge=1)
    image_size: int = opt(256, "side of the random square training crops, a multiple of 16 (smaller images are upscaled "
                               "first)", ge=32)
    num_workers: int = opt(0, "data-loader worker processes (0 = load in the training process)", ge=0)
    synthetic: InpaintSyntheticConfig = sub(InpaintSyntheticConfig, "built-in synthetic scenes (used when root is empty)")


@dataclass
class InpaintMaskConfig:
    kind: str = opt("rect", "rect (release: the box shrunk by a random margin) | stroke (free-form) | mixed",
                    choices=("rect", "stroke", "mixed"))
    box_size: int = opt(128, "side of the square hole box, a multiple of 16; the local critic sees this box (release: "
                             "128 at 256px)", ge=16)
    max_delta: int = opt(32, "rect holes shrink by 0..max_delta/2 pixels per side inside the box (release: 32; below "
                             "box_size)", ge=0)
    margin: int = opt(0, "keep boxes at least this many pixels from the image border", ge=0)


@dataclass
class InpaintModelConfig:
    cnum: int = opt(32, "generator channel base, even (release: 32)", ge=2)
    contextual_attention: bool = opt(True, "false = the no-contextual-attention ablation (same convs, layer skipped)")
    ca_ksize: int = opt(3, "contextual attention: background patch size at the downsampled resolution (odd)", ge=1)
    ca_rate: int = opt(2, "contextual attention: downsampling rate for matching (raw patches are 2*rate)",
                       choices=(1, 2, 4))
    ca_fuse_k: int = opt(3, "contextual attention: identity-kernel size of the score fusion (odd; 1 = off)", ge=1)
    ca_softmax_scale: float = opt(10.0, "contextual attention: softmax scale", gt=0)
    ca_memory_budget: int = opt(1 << 22, "contextual attention: score-matrix elements per chunk", ge=1)
    downsample: str = opt("release", "release (TF1 nearest resize with align_corners=True, e.g. 64 -> 32 reads rows 0, 2, "
                          "..., 30, 33, ..., 63: contextual attention and the generator's mask) | stride (every "
                          "rate-th row and column)", choices=("release", "stride"))
    padding: str = opt("same", "conv padding: same (TensorFlow 'SAME', as the release: a 3x3 stride-2 conv on an even "
                       "size pads 0 before, 1 after) | symmetric (PyTorch: 1 on both sides)", choices=("same", "symmetric"))
    init: str = opt("glorot", "initial weights of generator and critics: glorot (TensorFlow's defaults, as the release: "
                    "Glorot-uniform weights, zero biases) | torch (PyTorch's defaults)", choices=("glorot", "torch"))
    critic_cnum: int = opt(64, "critics' channel base (release: 64)", ge=1)


@dataclass
class InpaintLossConfig:
    gamma: float = opt(0.99, "spatial discount of the hole L1 (the paper's; release config 0.9)", gt=0, le=1)
    l1_alpha: float = opt(1.2, "weight of the discounted hole L1", ge=0)
    coarse_l1_alpha: float = opt(1.2, "weight of the coarse output inside the L1 and autoencoder terms", ge=0)
    ae_alpha: float = opt(1.2, "weight of the autoencoder L1 on the known region", ge=0)
    gan_alpha: float = opt(0.001, "weight of the WGAN generator terms (0 = no critics at all)", ge=0)
    global_wgan_alpha: float = opt(1.0, "weight of the global critic relative to the local one", ge=0)
    gp_lambda: float = opt(10.0, "gradient-penalty weight (penalty restricted to the hole)", ge=0)


@dataclass
class InpaintTrainConfig:
    max_steps: int = opt(100000, "generator steps", ge=1)
    time_budget: float = opt(0.0, "stop after this many seconds of training (0 = off); the last step is saved", ge=0)
    batch_size: int = opt(16, "images per step (release: 16)", ge=1)
    lr: float = opt(1e-4, "Adam learning rate of generator and critics (release: 1e-4)", gt=0)
    betas: list = opt([0.5, 0.9], "Adam betas (release: 0.5, 0.9)")
    critic_steps: int = opt(5, "critic updates per generator update (release: 5)", ge=0)
    critic_batches: str = opt("fresh", "fresh (release: each critic step draws a new batch, holes and a new completion) "
                              "| reuse (every critic step reuses the generator step's batch and completion)",
                              choices=("fresh", "reuse"))
    nonfinite: str = opt("stop", "a NaN/inf loss or gradient: stop (the last checkpoint stays good) | skip (drop that "
                                 "critic or generator update, go on)", choices=("stop", "skip"))
    max_nonfinite_skips: int = opt(20, "with nonfinite=skip: stop once this many updates of the run were dropped", ge=0)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)", ge=0)
    channels_last: bool = opt(True, "channels_last memory format for the networks")
    seed: int = opt(0, "seed of initialisation, data order, crops, masks and penalty interpolation")
    log_every: int = opt(10, "steps between metric lines in metrics.jsonl / TensorBoard", ge=1)
    image_every: int = opt(200, "steps between TensorBoard image grids (input, coarse, refined, flow); 0 = off", ge=0)
    eval_every: int = opt(0, "steps between held-out hole L1 evaluations (0 = only at the end)", ge=0)
    checkpoint_every: int = opt(500, "steps between checkpoints (one is always written at the end)", ge=1)
    keep_checkpoints: int = opt(2, "numbered checkpoints kept besides last.pt", ge=0)
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
    """The checks a key's declared bounds cannot express (run after them): multiples of 16, odd and even sizes,
    bounds set by another key, the betas list and the device name."""
    d, m, mo, t = cfg.data, cfg.mask, cfg.model, cfg.train
    require(d.image_size % 16 == 0, "data.image_size", f"must be a multiple of 16 (got {d.image_size})")
    require(m.box_size % 16 == 0, "mask.box_size", f"must be a multiple of 16 (got {m.box_size})")
    require(m.box_size + 2 * m.margin <= d.image_size, "mask.box_size",
            f"box {m.box_size} + 2 * margin {m.margin} must fit data.image_size {d.image_size}")
    require(m.max_delta < m.box_size, "mask.max_delta", f"must be < box_size ({m.box_size}) (got {m.max_delta})")
    require(mo.cnum % 2 == 0, "model.cnum", f"must be even (got {mo.cnum})")
    for key in ("ca_ksize", "ca_fuse_k"):
        require(getattr(mo, key) % 2 == 1, f"model.{key}", f"must be odd (got {getattr(mo, key)})")
    require(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "train.betas",
            f"must be [beta1, beta2] in [0, 1) (got {list(t.betas)})")
    require(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
            f"'{t.device}' is not auto, cpu, cuda or cuda:N")


register_validator(InpaintConfig, _validate)
