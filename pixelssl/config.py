"""Typed configuration: dataclass schemas + OmegaConf presets + dotted command-line overrides.

Every key has a default and a one-line description (``field(metadata={"help": ...})``), so
``pixelssl config`` can list them and a typo is answered with the nearest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from pixelssl.errors import PixelSSLError

T = TypeVar("T")


class ConfigError(PixelSSLError, ValueError):
    """A configuration problem, worded for the user (names the key and what is wrong)."""


def opt(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best at call sites
    """A schema field with its default and one-line description."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def sub(cls: type, help: str) -> Any:  # noqa: A002
    """A nested config section."""
    return field(default_factory=cls, metadata={"help": help})


# --------------------------------------------------------------------------- pre-training schema
@dataclass
class RunConfig:
    name: str = opt("", "run directory name under output_dir; empty = <method>_<backbone>_<timestamp>")
    output_dir: str = opt("runs", "parent folder of run directories")


@dataclass
class SyntheticConfig:
    num_images: int = opt(2000, "number of procedural scenes in the training set")
    size: int = opt(128, "side of each synthetic scene in pixels")
    num_classes: int = opt(6, "object classes (class 0 is background, so labels are 0..num_classes)")
    seed: int = opt(0, "seed of the scene generator; scene i is the same for every run with this seed")


@dataclass
class DataConfig:
    root: str = opt("", "folder of unlabeled images (searched recursively); empty = built-in synthetic scenes")
    image_size: int = opt(224, "side of each cropped view fed to the network")
    crop_scale: list = opt([0.08, 1.0], "random-resized-crop area range, as fractions of the image")
    crop_ratio: list = opt([0.75, 1.3333333], "random-resized-crop aspect-ratio range")
    flip_prob: float = opt(0.5, "probability of a horizontal flip per view")
    require_overlap: bool = opt(False, "resample crop pairs whose boxes do not overlap (PixCon needs it)")
    max_resample: int = opt(20, "attempts at an overlapping pair before keeping the last one")
    augment: str = opt("byol", "photometric recipe: byol | none")
    num_workers: int = opt(2, "data-loader worker processes (0 = load in the training process)")
    device_augment: bool = opt(False, "apply the photometric augmentation to whole batches on the training device "
                                      "(loader draws the same per-image parameters; for GPUs)")
    device_decode: bool = opt(False, "decode JPEGs on the training device (nvJPEG on CUDA) and crop them there; "
                                     "workers only read bytes and headers (needs device_augment; for GPUs)")
    synthetic: SyntheticConfig = sub(SyntheticConfig, "built-in synthetic scenes (used when root is empty)")


@dataclass
class ModelConfig:
    backbone: str = opt("resnet50", "backbone: resnet18 | resnet34 | resnet50 (torchvision) or timm:<name>")
    weights: str = opt("", "optional local backbone weights (.safetensors or .pt state dict) to start from")
    proj_hidden_dim: int = opt(4096, "hidden width of the projector / predictor heads")
    proj_dim: int = opt(256, "output width of the projector / predictor heads")
    zero_init_residual: bool = opt(False, "start the last BatchNorm weight of every residual block at 0 (each block "
                                          "begins as the identity; PixPro's release does, MoCo, DenseCL and PixCon "
                                          "do not); torchvision ResNets only")
    sync_bn: bool = opt(False, "convert BatchNorm to SyncBatchNorm when training distributed (NCCL on GPU, gloo on "
                               "CPU): statistics over the global batch")


@dataclass
class MethodConfig:
    name: str = opt("pixpro", "pre-training method: pixpro | pixpro_fpn | pixcontrast | moco | densecl | pixcon_coord "
                              "| pixcon_sim | pixcon_sr")
    momentum: float = opt(0.99, "base momentum m0 of the teacher (EMA) encoder")
    momentum_schedule: str = opt("cosine", "cosine (m0 -> 1 over training, PixPro/BYOL) | constant (MoCo)")
    pos_ratio: float = opt(0.7, "pixpro/pixcontrast: positive when centre distance / larger bin diagonal < this")
    ppm_gamma: float = opt(2.0, "pixpro: sharpness exponent of the propagation similarity")
    ppm_transform_layers: int = opt(1, "pixpro: value transform g: 0 = identity, 1 = 1x1 conv, 2 = conv-BN-ReLU-conv")
    ins_loss_weight: float = opt(0.0, "pixpro: weight of the instance branch (0 = off; 1 in the paper's PixPro+)")
    match_chunk_mib: float = opt(256.0, "pixpro / pixpro_fpn: memory budget (MiB) of one pairwise (B x rows x N) block "
                                        "of the matcher, loss and PPM; bigger maps run in row blocks (0 = never split)")
    fpn_levels: str = opt("p3-p7", "pixpro_fpn: FPN levels the loss is applied to: p3-p7 (FCOS's FPN, P6/P7 "
                                   "included) | p3-p5 (no P6/P7 convs)")
    fpn_head_convs: int = opt(0, "pixpro_fpn: FCOS head convs (3x3 conv-GN-ReLU, 0-4) shared by all levels between "
                                 "the FPN and the projector, pre-trained for FCOS's head towers")
    temperature: float = opt(0.3, "pixcontrast / moco / densecl / pixcon: InfoNCE temperature (0.3 PixContrast, "
                                   "0.2 MoCo-v2, DenseCL, PixCon)")
    queue_size: int = opt(0, "moco / pixcontrast / densecl / pixcon: negatives queue length (0 = no queue; 65536 for "
                             "MoCo-v2, DenseCL, PixCon, which need one)")
    shuffle_bn_groups: int = opt(1, "moco / densecl / pixcon: split the key batch into this many shuffled BN groups "
                                    "(1 = off)")
    loss_lambda: float = opt(0.5, "densecl / pixcon: dense loss weight, total = (1 - lambda) * global + lambda * dense")
    head_bn: bool = opt(True, "densecl / pixcon: BatchNorm in the projection / prediction heads (MoCo-v2+; false = "
                              "DenseCL's heads)")
    predictor: bool = opt(True, "densecl / pixcon: global and dense predictors on the online side (MoCo-v2+; false = "
                                "MoCo-v2 / DenseCL)")
    symmetric: bool = opt(True, "moco / densecl / pixcon: add the loss of both directions and enqueue a random view's "
                                "keys (false = view 1 -> view 2 only, enqueueing view 2's keys, as the MoCo-v2 and "
                                "DenseCL releases)")
    inbox_rule: str = opt("centre", "pixcon: which query cells count as inside the views' intersection: centre (cell "
                                    "centre inside the other view's box) | release (the intersection box in the query "
                                    "view's own coordinates, scaled to the map's grid and truncated, as the PixCon "
                                    "release's 7x7 masks)")
    sr_weights: str = opt("semantic", "pixcon_sr: semantic (similarity-based, in-box 1) | spatial (in-box 1, "
                                      "out-of-box 0: the paper's 'SR (Spa.)')")
    sr_power: float = opt(2.0, "pixcon_sr: sharpening power p of the semantic weights, w ** p")


@dataclass
class TrainConfig:
    epochs: int = opt(100, "passes over the training set (ignored when max_steps > 0)")
    max_steps: int = opt(0, "total optimiser steps; 0 = epochs * steps per epoch")
    batch_size: int = opt(256, "global images per step, over all processes (each gives two views; torchrun with N "
                               "processes: batch_size / N each)")
    optimizer: str = opt("lars", "lars | sgd (BN and bias excluded from weight decay and LARS adaptation)")
    base_lr: float = opt(1.0, "learning rate at batch 256; the actual lr is base_lr * batch_size / 256")
    weight_decay: float = opt(1e-5, "weight decay on conv / linear weights")
    sgd_momentum: float = opt(0.9, "optimiser momentum")
    warmup_epochs: float = opt(5.0, "linear warm-up length in epochs (fractions allowed)")
    warmup_steps: int = opt(-1, "linear warm-up in steps; -1 = derive from warmup_epochs")
    warmup_start_ratio: float = opt(-1.0, "lr at the first warm-up step as a fraction r of the peak: "
                                          "lr = peak * (r + (1 - r) * step / warmup), as PixPro's release (r = 0.01); "
                                          "-1 = peak * (step + 1) / warmup")
    final_lr: float = opt(0.0, "learning rate the cosine decay ends at (absolute; PixPro's release 1e-6, MoCo, DenseCL "
                             "and PixCon 0)")
    grad_clip: float = opt(0.0, "clip the global gradient norm to this value (0 = off)")
    nonfinite: str = opt("stop", "a NaN/inf loss or gradient: stop (the last checkpoint stays good) | skip (drop the "
                                 "step, undo its BatchNorm-statistics and queue updates, go on)")
    max_nonfinite_skips: int = opt(20, "with nonfinite=skip: stop once this many steps of the run were skipped")
    amp: str = opt("auto", "autocast: auto (bf16 where the hardware has it, else fp32) | fp32 | bf16 | fp16 (CUDA)")
    channels_last: bool = opt(True, "use channels_last memory format for the networks")
    compile: bool = opt(False, "torch.compile the model (in place; the first steps are slow while it compiles)")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)")
    seed: int = opt(0, "seed of data order, augmentation and initialisation")
    log_every: int = opt(10, "steps between metric lines in metrics.jsonl / TensorBoard")
    checkpoint_every: int = opt(500, "steps between checkpoints (one is always written at the end)")
    keep_checkpoints: int = opt(2, "numbered checkpoints kept besides last.pt (oldest removed first)")
    tensorboard: bool = opt(True, "write TensorBoard event files into the run directory")
    figure_every: int = opt(0, "steps between the report's figures (attention, PCA, matches, PPM / SR weights on "
                               "one fixed image) in TensorBoard; 0 = off (each costs ~1 s of CPU at ResNet-18)")
    monitor_every: int = opt(0, "steps between live monitors (collapse indicators and a small C5 linear probe's mIoU "
                                "as monitor/* metrics, also at the last step); 0 = off")
    monitor_data: str = opt("", "segmentation folder with train/ and val/ (images/ + labels/, as CamVid) for the "
                                "monitor's probe; empty = the built-in synthetic scenes")
    monitor_images: int = opt(16, "labelled images per split (train, val) for the monitor's probe, and training "
                                  "images in its fixed batch of views")
    monitor_image_size: int = opt(128, "shorter side the monitor's labelled images are resized to (labels nearest)")
    progress: bool = opt(True, "show a rich progress bar")


@dataclass
class PretrainConfig:
    run: RunConfig = sub(RunConfig, "where the run is written")
    data: DataConfig = sub(DataConfig, "training images and views")
    model: ModelConfig = sub(ModelConfig, "backbone and heads")
    method: MethodConfig = sub(MethodConfig, "pre-training method and its hyper-parameters")
    train: TrainConfig = sub(TrainConfig, "optimisation, precision, logging and checkpoints")


# --------------------------------------------------------------------------- generic machinery
def schema_keys(schema: type) -> dict[str, str]:
    """All dotted leaf keys of a schema with their descriptions, in declaration order."""
    instance = schema()
    out: dict[str, str] = {}
    for f in dataclasses.fields(schema):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            for key, text in schema_keys(type(value)).items():
                out[f"{f.name}.{key}"] = text
        else:
            out[f.name] = f.metadata.get("help", "")
    return out


def describe(schema: type) -> str:
    """Human-readable list of every key, its default and its description."""
    defaults = OmegaConf.structured(schema)
    lines = []
    for key, text in schema_keys(schema).items():
        value = OmegaConf.select(defaults, key)
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        lines.append(f"{key} = {value!r}\n    {text}")
    return "\n".join(lines)


def nearest_key(key: str, schema: type) -> str | None:
    """The valid dotted key closest to a misspelt one (None when nothing is close)."""
    keys = list(schema_keys(schema))
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not match:  # compare the last component too: "train.lr" -> "train.base_lr"
        leaf = key.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.5)
        match = [leaves[close[0]]] if close else []
    return match[0] if match else None


def _unknown_key_message(key: str, schema: type, source: str) -> str:
    hint = nearest_key(key, schema)
    tail = f"; did you mean '{hint}'?" if hint else "; run `pixelssl config` to list the keys"
    return f"unknown config key {_quoted(key)} in {source}{tail}"


def _check_keys(node: Any, schema: type, source: str, prefix: str = "") -> None:
    """Reject keys that are not in the schema before OmegaConf sees them (clearer message)."""
    valid = schema_keys(schema)
    sections = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if dotted in valid:
            continue
        if dotted in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{dotted}' in {source} is a section; give its keys, e.g. {dotted}.<key>")
            _check_keys(value, schema, source, dotted + ".")
            continue
        raise ConfigError(_unknown_key_message(dotted, schema, source))


def find_preset(name_or_path: str) -> Path:
    """A preset name shipped in pixelssl/configs, or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        return path
    shipped = resources.files("pixelssl.configs") / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = available_presets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; available: {', '.join(names)}"
        raise ConfigError(f"no config preset named '{name_or_path}'{hint}")
    return Path(str(shipped))


def available_presets() -> list[str]:
    """Names of the YAML presets shipped with the package."""
    folder = resources.files("pixelssl.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # yaml syntax errors come in many types
        raise ConfigError(f"cannot parse config file '{path}': {exc}".splitlines()[0]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


def _preset_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """A preset and the presets it builds on (``_base_: other_preset``), base first."""
    if path in seen:
        raise ConfigError(f"config file '{path}' includes itself through _base_")
    data = _read_yaml(path)
    base = data.pop("_base_", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"_base_ in config file '{path}' must be a preset name or a YAML path, "
                          f"not {type(base).__name__}")
    try:
        base_path = find_preset(base) if base else None
    except ConfigError as exc:
        raise ConfigError(f"_base_ of config file '{path}': {exc}") from exc
    layers = _preset_layers(base_path, (*seen, path)) if base_path else []
    return [*layers, (data, f"'{path}'")]


def _quoted(text: str) -> str:
    """``'text'`` for messages; ``repr`` when it holds a line break or control character (keeps errors one line)."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _parse_overrides(overrides: list[str], schema: type) -> dict:
    merged = OmegaConf.create()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {_quoted(item)} must look like key=value (e.g. train.epochs=5)")
        key = item.split("=", 1)[0].strip()
        if key not in schema_keys(schema):
            raise ConfigError(_unknown_key_message(key, schema, "the command line"))
        try:
            parsed = OmegaConf.from_dotlist([item])
        except Exception as exc:  # YAML reader / scanner / parser errors and OmegaConf's own, in many types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"cannot parse the value of override {_quoted(item)}: {reason}") from exc
        merged = OmegaConf.merge(merged, parsed)
    return OmegaConf.to_container(merged)


def load_config(schema: type[T], preset: str | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> T:
    """Schema defaults <- base dict (e.g. a saved run config) <- preset YAML <- dotted overrides.

    Returns a typed (dataclass-backed) OmegaConf object; raises ConfigError with a one-line message.
    """
    cfg = OmegaConf.structured(schema)
    layers: list[tuple[dict, str]] = []
    if base is not None:
        layers.append((base, "the saved config"))
    if preset:
        layers += _preset_layers(find_preset(preset))
    if overrides:
        layers.append((_parse_overrides(list(overrides), schema), "the command line"))
    for layer, source in layers:
        _check_keys(layer, schema, source)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except (ConfigKeyError, ConfigAttributeError) as exc:
            raise ConfigError(_unknown_key_message(str(exc.full_key), schema, source)) from exc
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or "?"
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"bad value for config key '{key}' in {source}: {reason}") from exc
    try:
        OmegaConf.resolve(cfg)  # a bad ${...} interpolation fails here, naming its key, not later inside a run
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot resolve config key '{key}': {reason[:300]}") from exc
    validator = _VALIDATORS.get(schema)
    if validator is not None:
        validator(cfg)
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (saved into every run directory)."""
    return OmegaConf.to_yaml(cfg)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# --------------------------------------------------------------------------- validation
def require(condition: bool, key: str, message: str) -> None:
    """Raise a ConfigError naming the key when a value is out of its allowed range."""
    if not condition:
        raise ConfigError(f"config key '{key}': {message}")


def choice(value: str, key: str, allowed: tuple[str, ...]) -> None:
    require(value in allowed, key, f"'{value}' is not one of {', '.join(allowed)}")


def _validate_pretrain(cfg: PretrainConfig) -> None:
    d, m, t, me = cfg.data, cfg.model, cfg.train, cfg.method
    require(d.image_size >= 32, "data.image_size", f"must be >= 32 (got {d.image_size})")
    require(d.device_augment or not d.device_decode, "data.device_decode",
            "needs data.device_augment=true (views decoded on the device get their photometric step there too)")
    require(len(d.crop_scale) == 2 and 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1, "data.crop_scale",
            f"must be [low, high] with 0 < low <= high <= 1 (got {list(d.crop_scale)})")
    require(len(d.crop_ratio) == 2 and 0 < d.crop_ratio[0] <= d.crop_ratio[1], "data.crop_ratio",
            f"must be [low, high] with 0 < low <= high (got {list(d.crop_ratio)})")
    require(0 <= d.flip_prob <= 1, "data.flip_prob", f"must be in [0, 1] (got {d.flip_prob})")
    require(d.max_resample >= 1, "data.max_resample", "must be >= 1")
    choice(d.augment, "data.augment", ("byol", "none"))
    require(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    require(d.synthetic.num_images >= 1, "data.synthetic.num_images", "must be >= 1")
    require(d.synthetic.size >= 32, "data.synthetic.size", "must be >= 32")
    require(1 <= d.synthetic.num_classes <= 12, "data.synthetic.num_classes", "must be in 1..12")
    require(m.proj_hidden_dim >= 1 and m.proj_dim >= 1, "model.proj_dim", "head widths must be >= 1")
    require(not (m.zero_init_residual and m.backbone.startswith("timm:")), "model.zero_init_residual",
            "applies to torchvision ResNets; timm models choose their own initialisation")
    from pixelssl.methods.registry import available_methods, method_class  # late: methods import config

    choice(me.name, "method.name", tuple(available_methods()))
    require(0 <= me.momentum <= 1, "method.momentum", f"must be in [0, 1] (got {me.momentum})")
    choice(me.momentum_schedule, "method.momentum_schedule", ("cosine", "constant"))
    require(me.pos_ratio > 0, "method.pos_ratio", "must be > 0")
    require(me.ppm_gamma > 0, "method.ppm_gamma", "must be > 0")
    require(me.ppm_transform_layers in (0, 1, 2), "method.ppm_transform_layers", "must be 0, 1 or 2")
    require(me.ins_loss_weight >= 0, "method.ins_loss_weight", "must be >= 0")
    require(me.match_chunk_mib >= 0, "method.match_chunk_mib", f"must be >= 0 (got {me.match_chunk_mib})")
    choice(me.fpn_levels, "method.fpn_levels", ("p3-p7", "p3-p5"))
    require(0 <= me.fpn_head_convs <= 4, "method.fpn_head_convs", f"must be in 0..4 (got {me.fpn_head_convs})")
    require(me.temperature > 0, "method.temperature", "must be > 0")
    require(me.queue_size >= 0, "method.queue_size", "must be >= 0")
    require(me.shuffle_bn_groups >= 1, "method.shuffle_bn_groups", "must be >= 1")
    require(me.queue_size >= 1 or not getattr(method_class(me.name), "requires_queue", False), "method.queue_size",
            f"{me.name} takes its negatives from a queue: set it >= 1 (65536 in the paper, 4096 in the demo presets)")
    require(0 <= me.loss_lambda <= 1, "method.loss_lambda", f"must be in [0, 1] (got {me.loss_lambda})")
    choice(me.sr_weights, "method.sr_weights", ("semantic", "spatial"))
    choice(me.inbox_rule, "method.inbox_rule", ("centre", "release"))
    require(me.sr_power > 0, "method.sr_power", f"must be > 0 (got {me.sr_power})")
    require(t.epochs >= 1 or t.max_steps > 0, "train.epochs", "must be >= 1 (or set train.max_steps)")
    require(t.max_steps >= 0, "train.max_steps", "must be >= 0")
    require(t.batch_size >= 2, "train.batch_size", "must be >= 2 (BatchNorm needs more than one image)")
    choice(t.optimizer, "train.optimizer", ("lars", "sgd"))
    require(t.base_lr > 0, "train.base_lr", "must be > 0")
    require(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    require(t.warmup_epochs >= 0, "train.warmup_epochs", "must be >= 0")
    require(t.warmup_start_ratio == -1 or 0 <= t.warmup_start_ratio < 1, "train.warmup_start_ratio",
            f"must be -1 or in [0, 1) (got {t.warmup_start_ratio})")
    require(0 <= t.final_lr < t.base_lr * t.batch_size / 256, "train.final_lr",
            f"must be >= 0 and below the peak lr base_lr * batch_size / 256 (got {t.final_lr})")
    require(t.grad_clip >= 0, "train.grad_clip", "must be >= 0")
    choice(t.amp, "train.amp", ("auto", "fp32", "bf16", "fp16"))
    choice(t.nonfinite, "train.nonfinite", ("stop", "skip"))
    require(t.max_nonfinite_skips >= 0, "train.max_nonfinite_skips", "must be >= 0")
    require(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
            f"'{t.device}' is not auto, cpu, cuda or cuda:N")
    require(t.log_every >= 1, "train.log_every", "must be >= 1")
    require(t.figure_every >= 0, "train.figure_every", f"must be >= 0 (got {t.figure_every})")
    require(t.figure_every == 0 or t.tensorboard, "train.figure_every", "needs train.tensorboard=true (figures go "
                                                                        "to TensorBoard)")
    require(t.monitor_every >= 0, "train.monitor_every", f"must be >= 0 (got {t.monitor_every})")
    require(t.monitor_images >= 2, "train.monitor_images", f"must be >= 2 (got {t.monitor_images})")
    require(t.monitor_image_size >= 32, "train.monitor_image_size", f"must be >= 32 (got {t.monitor_image_size})")
    require(t.checkpoint_every >= 1, "train.checkpoint_every", "must be >= 1")
    require(t.keep_checkpoints >= 0, "train.keep_checkpoints", "must be >= 0")


_VALIDATORS: dict[type, Any] = {PretrainConfig: _validate_pretrain}


def register_validator(schema: type, fn: Any) -> None:
    """Attach a range/choice validator to a schema (other subsystems register theirs)."""
    _VALIDATORS[schema] = fn
