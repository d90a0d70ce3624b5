"""The pre-training schema: ``run``, ``data``, ``model``, ``train`` and the ``method`` section, whose keys each
method declares in its own file (a ``MethodConfig`` subclass, registered with the method)."""

from __future__ import annotations

from dataclasses import dataclass

from pixelssl.config.schema import Problems, opt, sub, variants


@dataclass
class RunConfig:
    name: str = opt("", "run directory name under output_dir; empty = <method>_<backbone>_<timestamp>")
    output_dir: str = opt("runs", "parent folder of run directories")


@dataclass
class SyntheticConfig:
    num_images: int = opt(2000, "number of procedural scenes in the training set", ge=1)
    size: int = opt(128, "side of each synthetic scene in pixels")
    num_classes: int = opt(6, "object classes (class 0 is background, so labels are 0..num_classes)")
    seed: int = opt(0, "seed of the scene generator; scene i is the same for every run with this seed")


@dataclass
class DataConfig:
    root: str = opt("", "folder of unlabeled images (searched recursively); empty = built-in synthetic scenes")
    image_size: int = opt(224, "side of each cropped view fed to the network", ge=32)
    crop_scale: list = opt([0.08, 1.0], "random-resized-crop area range, as fractions of the image")
    crop_ratio: list = opt([0.75, 1.3333333], "random-resized-crop aspect-ratio range")
    flip_prob: float = opt(0.5, "probability of a horizontal flip per view", ge=0, le=1)
    require_overlap: bool = opt(False, "resample crop pairs whose boxes do not overlap (PixCon needs it)")
    max_resample: int = opt(20, "attempts at an overlapping pair before keeping the last one", ge=1)
    augment: str = opt("byol", "photometric recipe: byol | none", choices=("byol", "none"))
    num_workers: int = opt(2, "data-loader worker processes (0 = load in the training process)", ge=0)
    device_augment: bool = opt(False, "apply the photometric augmentation to whole batches on the training device "
                                      "(loader draws the same per-image parameters; for GPUs)")
    device_decode: bool = opt(False, "decode JPEGs on the training device (nvJPEG on CUDA) and crop them there; "
                                     "workers only read bytes and headers (needs device_augment; for GPUs)")
    synthetic: SyntheticConfig = sub(SyntheticConfig, "built-in synthetic scenes (used when root is empty)")

    def problems(self) -> Problems:
        scale, ratio, synthetic = list(self.crop_scale), list(self.crop_ratio), self.synthetic
        if self.device_decode and not self.device_augment:
            yield "device_decode", ("needs data.device_augment=true (views decoded on the device get their "
                                    "photometric step there too)")
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            yield "crop_scale", f"must be [low, high] with 0 < low <= high <= 1 (got {scale})"
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            yield "crop_ratio", f"must be [low, high] with 0 < low <= high (got {ratio})"
        # the scenes' bounds for pre-training (inpainting shares SyntheticConfig with bounds of its own)
        if synthetic.size < 32:
            yield "synthetic.size", f"must be >= 32 (got {synthetic.size})"
        if not 1 <= synthetic.num_classes <= 12:
            yield "synthetic.num_classes", f"must be in 1..12 (got {synthetic.num_classes})"


@dataclass
class ModelConfig:
    backbone: str = opt("resnet50", "backbone: resnet18 | resnet34 | resnet50 | resnet101 (torchvision) or timm:<name>")
    weights: str = opt("", "optional local backbone weights (.safetensors or .pt state dict) to start from")
    proj_hidden_dim: int = opt(4096, "hidden width of the projector / predictor heads", ge=1)
    proj_dim: int = opt(256, "output width of the projector / predictor heads", ge=1)
    zero_init_residual: bool = opt(False, "start the last BatchNorm weight of every residual block at 0 (each block "
                                          "begins as the identity; PixPro's release does, MoCo, DenseCL and PixCon "
                                          "do not); torchvision ResNets only")
    sync_bn: bool = opt(False, "convert BatchNorm to SyncBatchNorm when training distributed (NCCL on GPU, gloo on "
                               "CPU): statistics over the global batch")

    def problems(self) -> Problems:
        if self.zero_init_residual and self.backbone.startswith("timm:"):
            yield "zero_init_residual", "applies to torchvision ResNets; timm models choose their own initialisation"


@dataclass
class MethodConfig:
    """What every method has: its name and the teacher's momentum. Each method's own keys are declared with it
    (``PixProConfig`` in ``pixelssl/methods/pixpro.py``, ...)."""

    name: str = opt("pixpro", "pre-training method: pixpro | pixpro_fpn | pixcontrast | moco | densecl | pixcon_coord "
                              "| pixcon_sim | pixcon_sr (each with its own keys, below)")
    momentum: float = opt(0.99, "base momentum m0 of the teacher (EMA) encoder", ge=0, le=1)
    momentum_schedule: str = opt("cosine", "cosine (m0 -> 1 over training, PixPro/BYOL) | constant (MoCo)",
                                 choices=("cosine", "constant"))


@dataclass
class TrainConfig:
    epochs: int = opt(100, "passes over the training set (ignored when max_steps > 0)")
    max_steps: int = opt(0, "total optimiser steps; 0 = epochs * steps per epoch", ge=0)
    batch_size: int = opt(256, "global images per step, over all processes (each gives two views; torchrun with N "
                               "processes: batch_size / N each)", ge=2)
    optimizer: str = opt("lars", "lars | sgd (BN and bias excluded from weight decay and LARS adaptation)",
                         choices=("lars", "sgd"))
    base_lr: float = opt(1.0, "learning rate at batch 256; the actual lr is base_lr * batch_size / 256", gt=0)
    weight_decay: float = opt(1e-5, "weight decay on conv / linear weights", ge=0)
    sgd_momentum: float = opt(0.9, "optimiser momentum")
    warmup_epochs: float = opt(5.0, "linear warm-up length in epochs (fractions allowed)", ge=0)
    warmup_steps: int = opt(-1, "linear warm-up in steps; -1 = derive from warmup_epochs")
    warmup_start_ratio: float = opt(-1.0, "lr at the first warm-up step as a fraction r of the peak: "
                                          "lr = peak * (r + (1 - r) * step / warmup), as PixPro's release (r = 0.01); "
                                          "-1 = peak * (step + 1) / warmup", ge=0, lt=1, also=(-1,))
    final_lr: float = opt(0.0, "learning rate the cosine decay ends at (absolute; PixPro's release 1e-6, MoCo, DenseCL "
                             "and PixCon 0)")
    grad_clip: float = opt(0.0, "clip the global gradient norm to this value (0 = off)", ge=0)
    nonfinite: str = opt("stop", "a NaN/inf loss or gradient: stop (the last checkpoint stays good) | skip (drop the "
                                 "step, undo its BatchNorm-statistics and queue updates, go on)", choices=("stop", "skip"))
    max_nonfinite_skips: int = opt(20, "with nonfinite=skip: stop once this many steps of the run were skipped", ge=0)
    amp: str = opt("auto", "autocast: auto (bf16 where the hardware has it, else fp32) | fp32 | bf16 | fp16 (CUDA)",
                   choices=("auto", "fp32", "bf16", "fp16"))
    channels_last: bool = opt(True, "use channels_last memory format for the networks")
    compile: bool = opt(False, "torch.compile the model (in place; the first steps are slow while it compiles)")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)")
    seed: int = opt(0, "seed of data order, augmentation and initialisation")
    log_every: int = opt(10, "steps between metric lines in metrics.jsonl / TensorBoard", ge=1)
    checkpoint_every: int = opt(500, "steps between checkpoints (one is always written at the end)", ge=1)
    keep_checkpoints: int = opt(2, "numbered checkpoints kept besides last.pt (oldest removed first)", ge=0)
    tensorboard: bool = opt(True, "write TensorBoard event files into the run directory")
    figure_every: int = opt(0, "steps between the report's figures (attention, PCA, matches, PPM / SR weights on "
                               "one fixed image) in TensorBoard; 0 = off (each costs ~0.5-1 s of CPU at ResNet-18)", ge=0)
    monitor_every: int = opt(0, "steps between live monitors (collapse indicators and a small C5 linear probe's mIoU "
                                "as monitor/* metrics, also at the last step); 0 = off", ge=0)
    monitor_data: str = opt("", "segmentation folder with train/ and val/ (images/ + labels/, as CamVid) for the "
                                "monitor's probe; empty = the built-in synthetic scenes")
    monitor_images: int = opt(16, "labelled images per split (train, val) for the monitor's probe, and training "
                                  "images in its fixed batch of views", ge=2)
    monitor_image_size: int = opt(128, "shorter side the monitor's labelled images are resized to (labels nearest)",
                                  ge=32)
    progress: bool = opt(True, "show a rich progress bar")

    def problems(self) -> Problems:
        if self.epochs < 1 and self.max_steps <= 0:
            yield "epochs", "must be >= 1 (or set train.max_steps)"
        if not 0 <= self.final_lr < self.base_lr * self.batch_size / 256:
            yield "final_lr", f"must be >= 0 and below the peak lr base_lr * batch_size / 256 (got {self.final_lr})"
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            yield "device", f"'{self.device}' is not auto, cpu, cuda or cuda:N"
        if self.figure_every and not self.tensorboard:
            yield "figure_every", "needs train.tensorboard=true (figures go to TensorBoard)"


@dataclass
class PretrainConfig:
    run: RunConfig = sub(RunConfig, "where the run is written")
    data: DataConfig = sub(DataConfig, "training images and views")
    model: ModelConfig = sub(ModelConfig, "backbone and heads")
    method: MethodConfig = variants(MethodConfig, "pre-training method (method.name) and its own hyper-parameters")
    train: TrainConfig = sub(TrainConfig, "optimisation, precision, logging and checkpoints")


