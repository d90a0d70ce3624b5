"""The authors' released DeepFill v1 weights (TensorFlow checkpoints) as our ``generator.safetensors``.

The release (v1.0.0, ``inpaint_model.py`` ``build_inpaint_net``) builds its generator under the variable scope
``inpaint_net`` from ``gen_conv`` layers (``tf.layers.conv2d``: variables ``NAME/kernel`` (kh, kw, in, out) and
``NAME/bias``) and ``gen_deconv`` layers (a scope ``NAME`` around the conv ``NAME_conv``): 42 convs, 84 variables,
in the order our ``InpaintGenerator`` defines its convs. Its checkpoints also hold the critics (``discriminator/``),
Adam slots (``.../Adam``, ``.../Adam_1``), ``beta1_power``, ``lr`` and ``global_step``; those are counted and left.

Two conversions: kernels HWIO -> OIHW, and colour order. The release reads images with OpenCV (``cv2.imread``
in ``test.py`` and in neuralgym's ``DataFromFNames``), so its network sees and paints BGR; ours is RGB. The image
input channels of the three first convs (``conv1``, ``xconv1``, ``pmconv1``: B, G, R, ones, mask) and the output
channels of the two last (``conv17``, ``allconv17``) are reversed, which makes our generator on an RGB image equal
to the release's on the same image in BGR.

Example::

    imported = import_release("model_logs/release_places2_256")  # folder with `checkpoint` + snap-*.index/.data
    print(imported.report(write_release_generator(imported)))
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pixelssl.errors import WeightsFileError
from pixelssl.inpaint.tf_checkpoint import TensorBundle

DT_FLOAT = 1

SCOPE = "inpaint_net"


def _upsample(name: str) -> str:
    return f"{name}/{name}_conv"  # release gen_deconv: variable_scope(name) around gen_conv(name=name + '_conv')


# The release's generator layers (build_inpaint_net order) -> our conv modules (InpaintGenerator definition order).
RELEASE_LAYERS: list[tuple[str, str]] = [
    *[(name, f"coarse.encoder.{i}.0") for i, name in enumerate(
        ["conv1", "conv2_downsample", "conv3", "conv4_downsample", "conv5", "conv6", "conv7_atrous",
         "conv8_atrous", "conv9_atrous", "conv10_atrous", "conv11", "conv12"])],
    (_upsample("conv13_upsample"), "coarse.decoder.0.1.0"), ("conv14", "coarse.decoder.1.0"),
    (_upsample("conv15_upsample"), "coarse.decoder.2.1.0"), ("conv16", "coarse.decoder.3.0"),
    ("conv17", "coarse.decoder.4.0"),
    *[(name, f"refine.conv_branch.{i}.0") for i, name in enumerate(
        ["xconv1", "xconv2_downsample", "xconv3", "xconv4_downsample", "xconv5", "xconv6", "xconv7_atrous",
         "xconv8_atrous", "xconv9_atrous", "xconv10_atrous"])],
    *[(name, f"refine.attention_in.{i}.0") for i, name in enumerate(
        ["pmconv1", "pmconv2_downsample", "pmconv3", "pmconv4_downsample", "pmconv5", "pmconv6"])],
    ("pmconv9", "refine.attention_out.0.0"), ("pmconv10", "refine.attention_out.1.0"),
    ("allconv11", "refine.merge.0.0"), ("allconv12", "refine.merge.1.0"),
    (_upsample("allconv13_upsample"), "refine.decoder.0.1.0"), ("allconv14", "refine.decoder.1.0"),
    (_upsample("allconv15_upsample"), "refine.decoder.2.1.0"), ("allconv16", "refine.decoder.3.0"),
    ("allconv17", "refine.decoder.4.0"),
]
BGR_INPUT = ("conv1", "xconv1", "pmconv1")  # input channels B, G, R, ones, mask
BGR_OUTPUT = ("conv17", "allconv17")  # output channels B, G, R
# The release's settings of our model options (contextual_attention(x, x, mask_s, 3, 1, rate=2), fuse_k 3, softmax
# scale 10, TF 'SAME' padding, TF1 align-corners nearest resizes), where this version has the option.
RELEASE_MODEL = {"contextual_attention": True, "ca_ksize": 3, "ca_rate": 2, "ca_fuse_k": 3, "ca_softmax_scale": 10.0,
                 "padding": "same", "downsample": "release"}


def release_variables() -> dict[str, str]:
    """Release variable name -> our parameter name, for all 84 generator variables."""
    names = {}
    for layer, module in RELEASE_LAYERS:
        names[f"{SCOPE}/{layer}/kernel"] = f"{module}.weight"
        names[f"{SCOPE}/{layer}/bias"] = f"{module}.bias"
    return names


def to_torch(layer: str, kind: str, value: np.ndarray) -> Tensor:
    """One release variable as our parameter: kernel HWIO -> OIHW, BGR -> RGB where the layer touches colours."""
    if kind == "kernel":
        value = value.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        if layer in BGR_INPUT:
            value = np.concatenate([value[:, 2::-1], value[:, 3:]], axis=1)
    if layer in BGR_OUTPUT:
        value = value[::-1]
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def _is_optimizer_slot(name: str) -> bool:
    return re.fullmatch(r"Adam(_\d+)?", name.rsplit("/", 1)[-1]) is not None  # TF1 AdamOptimizer slot names


def _ignored_group(name: str) -> str:
    parts = name.split("/")
    if _is_optimizer_slot(name):
        return "optimizer slots (.../Adam, .../Adam_1)"
    if parts[0] == "discriminator":
        return "discriminator/*"
    return name if len(parts) == 1 else f"{parts[0]}/*"


@dataclass
class ImportedRelease:
    """The release generator in our names, its config, and what else the checkpoint held."""

    prefix: Path
    cnum: int
    state: dict[str, Tensor]
    model: dict  # the ``model`` config the weights go with (``pixelssl_inpaint`` metadata)
    ignored: list[str] = field(default_factory=list)

    def report(self, written: Path | None = None) -> str:
        examples = [("inpaint_net/conv1/kernel", "coarse.encoder.0.0.weight"),
                    (f"inpaint_net/{_upsample('allconv13_upsample')}/bias", "refine.decoder.0.1.0.bias")]
        lines = [f"imported {self.prefix} (DeepFill v1 release, TensorFlow checkpoint)",
                 f"  generator: cnum {self.cnum}, {sum(t.numel() for t in self.state.values()) / 1e6:.2f}M parameters",
                 f"  used {len(self.state)} tensors ({len(RELEASE_LAYERS)} convs), e.g. "
                 + ", ".join(f"{src} -> {dst}" for src, dst in examples),
                 "  converted: kernels HWIO -> OIHW; colours BGR -> RGB (inputs of conv1/xconv1/pmconv1, outputs of "
                 "conv17/allconv17)"]
        groups = Counter(_ignored_group(name) for name in self.ignored)
        lines.append(f"  ignored {len(self.ignored)} tensors" + (": " + ", ".join(
            f"{g} ({n})" if n > 1 else g for g, n in sorted(groups.items())) if groups else ""))
        if written:
            lines.append(f"wrote {written}")
        return "\n".join(lines)


def import_release(path: str | Path, verify: bool = True) -> ImportedRelease:
    """Read the release checkpoint at ``path`` (folder, prefix or ``.index``) and map its generator exactly: a
    generator variable left over, one missing or one of the wrong shape is a one-line ``WeightsFileError``."""
    from pixelssl.inpaint.config import InpaintModelConfig
    from pixelssl.inpaint.train import build_generator

    bundle = TensorBundle.open(path)
    names = release_variables()
    present = set(bundle.entries)
    in_scope = {n for n in present if n.startswith(SCOPE + "/") and not _is_optimizer_slot(n)}
    extra = sorted(in_scope - set(names))
    missing = [n for n in names if n not in present]
    where = f"checkpoint '{bundle.prefix}'"
    if extra:
        raise WeightsFileError(f"{where} has {len(extra)} generator variable(s) the DeepFill v1 release does not: "
                               f"{', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}; is it another model?")
    if missing:
        raise WeightsFileError(f"{where} lacks {len(missing)} generator variable(s) of the DeepFill v1 release: "
                               f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    conv1 = bundle.entries[f"{SCOPE}/conv1/kernel"].shape
    cnum = conv1[-1] if len(conv1) == 4 and conv1[-1] >= 2 else 32  # the release hardcodes 32; shapes are checked
    options = {f.name for f in fields(InpaintModelConfig)}
    model = asdict(InpaintModelConfig(cnum=cnum, **{k: v for k, v in RELEASE_MODEL.items() if k in options}))
    expected = build_generator(model).state_dict()
    state: dict[str, Tensor] = {}
    for layer, module in RELEASE_LAYERS:
        for kind, ours in (("kernel", f"{module}.weight"), ("bias", f"{module}.bias")):
            name, entry = f"{SCOPE}/{layer}/{kind}", bundle.entries[f"{SCOPE}/{layer}/{kind}"]
            out_c, *rest = expected[ours].shape
            want = (rest[1], rest[2], rest[0], out_c) if kind == "kernel" else (out_c,)  # HWIO
            if entry.shape != want or entry.dtype != DT_FLOAT:
                raise WeightsFileError(f"{where}: '{name}' is {entry.dtype_name} {list(entry.shape)}, but the "
                                       f"release generator (cnum {cnum}) has float32 {list(want)}")
            state[ours] = to_torch(layer, kind, bundle.read(name, verify=verify))
    ignored = sorted(present - set(names))
    return ImportedRelease(bundle.prefix, cnum, state, model, ignored)


def default_output(prefix: Path) -> Path:
    """``<checkpoint folder>_pixelssl/generator.safetensors`` beside the checkpoint's folder."""
    folder = prefix.parent
    return folder.with_name(f"{folder.name}_pixelssl") / "generator.safetensors"


def write_release_generator(imported: ImportedRelease, out: str | Path | None = None) -> Path:
    """Write ``generator.safetensors`` (our format, config in its metadata) that ``fill`` / ``eval`` / ``serve`` load.
    ``out``: a ``.safetensors`` file or a folder (default: see ``default_output``)."""
    from pixelssl.inpaint.train import build_generator, save_generator

    path = default_output(imported.prefix) if out is None else Path(out)
    if path.suffix != ".safetensors":
        path = path / "generator.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = build_generator(imported.model)
    generator.load_state_dict(imported.state)
    save_generator(generator, imported.model, path)
    return path
