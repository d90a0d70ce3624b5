"""DeepFill v1 networks: coarse-to-fine generator with contextual attention, and global + local WGAN critics.

Layer by layer as the authors' v1.0.0 release (``inpaint_model.py``, ``inpaint_ops.py``): ELU after every conv but
the last, nearest x2 upsampling followed by a 3x3 conv, outputs clipped to [-1, 1]. Three release choices are
options, the release's being the default:

* ``padding="same"``: convs pad as TensorFlow's 'SAME' (``SameConv2d``); a stride-2 conv on an even size pads 0
  before and 1 after, where PyTorch's symmetric padding (``"symmetric"``) pads 1 on both sides;
* ``init="glorot"``: weights start Glorot-uniform and biases 0, TensorFlow's defaults (``"torch"``: PyTorch's);
* ``downsample="release"``: the hole mask reaches the attention branch's 1/4 resolution, and contextual attention
  its 1/8, through TF1's align-corners nearest resize (``"stride"``: every 4th / 2nd row and column).

Example::

    g = InpaintGenerator(cnum=32)
    coarse, refined, flow = g(image, mask)  # image in [-1, 1], mask 1 = hole, both (B, *, H, W), H, W % 8 == 0
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.inpaint.contextual_attention import (
    DEFAULT_MEMORY_BUDGET,
    DOWNSAMPLE_MODES,
    ContextualAttention,
    resize_nearest,
    same_padding,
)

PADDING_MODES = ("same", "symmetric")  # TensorFlow 'SAME' (release) | PyTorch symmetric
INIT_MODES = ("glorot", "torch")  # TensorFlow's Glorot-uniform weights and zero biases (release) | PyTorch's defaults


def _check(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r} ({' | '.join(allowed)})")


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` padded as TensorFlow's 'SAME' (the release's ``tf.layers.conv2d(..., padding='SAME')``).

    Per axis: ``total = max((ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)``, ``before = total // 2``, the rest
    after; so an even input to a 3x3 stride-2 conv gets 0 before and 1 after, and a stride-1 conv the symmetric
    ``d * (k - 1) / 2``. Same parameters (names, shapes) as ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation)

    def same_pads(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) padding of a (height, width) input, in ``F.pad`` order."""
        pads = []
        for size, k, s, d in zip((width, height), self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            pads += same_padding(size, d * (k - 1) + 1, s)[1:]
        return tuple(pads)

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.same_pads(*x.shape[-2:])
        if left == right and top == bottom:  # stride 1 (or odd sizes): symmetric, padded inside the conv
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, self.dilation)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", padding=SAME"


def make_conv(cin: int, cout: int, ksize: int, stride: int = 1, dilation: int = 1,
              padding: str = "same") -> nn.Conv2d:
    """A 'same'-size conv: TensorFlow's 'SAME' padding (release) or PyTorch's symmetric ``dilation * (k - 1) // 2``."""
    _check(padding, "padding", PADDING_MODES)
    if padding == "same":
        return SameConv2d(cin, cout, ksize, stride, dilation)
    return nn.Conv2d(cin, cout, ksize, stride, dilation * (ksize - 1) // 2, dilation)


def glorot_init_(module: nn.Module) -> None:
    """TensorFlow's defaults of ``tf.layers.conv2d`` / ``dense``: Glorot-uniform weights, zero biases.

    Glorot-uniform draws from U(-a, a), ``a = sqrt(6 / (fan_in + fan_out))`` with fans ``k * k * C_in`` and
    ``k * k * C_out``: ``nn.init.xavier_uniform_``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)  # DeepFill v1 release: tf.layers default glorot_uniform_initializer
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# A conv layer of the release's generator: (output channels as a multiple of cnum, kernel, stride, dilation).
Spec = tuple[float, int, int, int]


class GenConv(nn.Sequential):
    """DeepFill v1 ``gen_conv``: conv with 'same' padding (optionally strided or dilated), then ELU unless disabled."""

    def __init__(self, cin: int, cout: int, ksize: int = 3, stride: int = 1, dilation: int = 1,
                 activation: str = "elu", padding: str = "same") -> None:
        layers: list[nn.Module] = [make_conv(cin, cout, ksize, stride, dilation, padding)]
        if activation == "elu":
            layers.append(nn.ELU(inplace=True))
        elif activation == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif activation != "none":
            raise ValueError(f"unknown activation {activation!r}")
        super().__init__(*layers)


class GenDeconv(nn.Sequential):
    """DeepFill v1 ``gen_deconv``: nearest-neighbour x2 upsampling, then a 3x3 ``gen_conv``.

    The release resizes with ``align_corners=True``; for exactly x2 that reads input ``i // 2`` like PyTorch's
    nearest (``align_corners_indices``), so ``nn.Upsample`` is the release's upsampling.
    """

    def __init__(self, cin: int, cout: int, padding: str = "same") -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), GenConv(cin, cout, 3, padding=padding))


def conv_stack(cin: int, cnum: int, specs: list[Spec], last_activation: str = "elu",
               padding: str = "same") -> tuple[nn.Sequential, int]:
    """A chain of ``GenConv`` from (width multiple, kernel, stride, dilation) specs; returns it and its output width."""
    layers = []
    for n, (mult, ksize, stride, dilation) in enumerate(specs):
        cout = int(mult * cnum)
        layers.append(GenConv(cin, cout, ksize, stride, dilation, last_activation if n == len(specs) - 1 else "elu",
                              padding))
        cin = cout
    return nn.Sequential(*layers), cin


def decoder(cin: int, cnum: int, padding: str = "same") -> nn.Sequential:
    """The release's shared decoder tail: up x2 (2c), conv (2c), up x2 (c), conv (c/2), conv to RGB (no activation)."""
    return nn.Sequential(GenDeconv(cin, 2 * cnum, padding), GenConv(2 * cnum, 2 * cnum, padding=padding),
                         GenDeconv(2 * cnum, cnum, padding), GenConv(cnum, cnum // 2, padding=padding),
                         GenConv(cnum // 2, 3, activation="none", padding=padding))


DILATED = [(4, 3, 1, 2), (4, 3, 1, 4), (4, 3, 1, 8), (4, 3, 1, 16)]  # DeepFill v1: dilations 2, 4, 8, 16 at 1/4
COARSE = [(1, 5, 1, 1), (2, 3, 2, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1),
          *DILATED, (4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_CONV = [(1, 5, 1, 1), (1, 3, 2, 1), (2, 3, 1, 1), (2, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1), *DILATED]
REFINE_ATTENTION_IN = [(1, 5, 1, 1), (1, 3, 2, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_ATTENTION_OUT = [(4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_MERGE = [(4, 3, 1, 1), (4, 3, 1, 1)]


def with_mask_channels(image: Tensor, mask: Tensor) -> Tensor:
    """A stage's 5-channel input: the image, a ones channel and ones * mask (DeepFill v1 release)."""
    ones = torch.ones_like(mask)
    return torch.cat([image, ones, ones * mask], dim=1)


def generator_input(image: Tensor, mask: Tensor) -> Tensor:
    """DeepFill v1 input: the image with its hole zeroed, a ones channel and ones * mask (5 channels)."""
    return with_mask_channels(image * (1 - mask), mask)


class CoarseGenerator(nn.Module):
    """Stage 1: encoder (two stride-2 convs), dilated convs 2/4/8/16 at 1/4 resolution, decoder; clipped to [-1, 1]."""

    def __init__(self, cnum: int = 32, padding: str = "same") -> None:
        super().__init__()
        self.encoder, width = conv_stack(5, cnum, COARSE, padding=padding)
        self.decoder = decoder(width, cnum, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x)).clamp(-1, 1)


class RefinementGenerator(nn.Module):
    """Stage 2: a dilated-conv branch and a contextual-attention branch on the pasted coarse result, merged, decoded.

    ``use_contextual_attention=False`` is the ablation: the attention branch keeps its convs but skips the layer.
    ``downsample`` is how the hole mask reaches the attention branch's resolution (see the module docstring).
    """

    def __init__(self, cnum: int = 32, use_contextual_attention: bool = True,
                 attention: ContextualAttention | None = None, padding: str = "same",
                 downsample: str = "release") -> None:
        super().__init__()
        _check(downsample, "downsample", DOWNSAMPLE_MODES)
        self.use_contextual_attention = use_contextual_attention
        self.downsample = downsample
        self.conv_branch, conv_width = conv_stack(5, cnum, REFINE_CONV, padding=padding)
        self.attention_in, width = conv_stack(5, cnum, REFINE_ATTENTION_IN, last_activation="relu", padding=padding)
        self.attention = attention or ContextualAttention(downsample=downsample)
        self.attention_out, attention_width = conv_stack(width, cnum, REFINE_ATTENTION_OUT, padding=padding)
        self.merge, merged = conv_stack(conv_width + attention_width, cnum, REFINE_MERGE, padding=padding)
        self.decoder = decoder(merged, cnum, padding)

    def small_mask(self, mask: Tensor, size: tuple[int, int]) -> Tensor:
        """The hole mask at the attention branch's resolution ``size``."""
        if self.downsample == "release":  # DeepFill v1 release: inpaint_ops.resize_mask_like, align_corners=True
            return resize_nearest(mask, size)
        return F.interpolate(mask, size=size, mode="nearest")  # every 4th row and column

    def forward(self, x: Tensor, mask: Tensor, return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
        hallucinated = self.conv_branch(x)
        features = self.attention_in(x)
        flow = None
        if self.use_contextual_attention:
            mask_small = self.small_mask(mask, tuple(features.shape[-2:]))
            features, flow = self.attention(features, features, mask_small, return_flow=return_flow)
        features = self.attention_out(features)
        out = self.decoder(self.merge(torch.cat([hallucinated, features], dim=1)))
        return out.clamp(-1, 1), flow


class GeneratorOutput(NamedTuple):
    coarse: Tensor  # (B, 3, H, W) stage-1 output in [-1, 1]
    refined: Tensor  # (B, 3, H, W) stage-2 output in [-1, 1]
    flow: Tensor | None  # (B, 3, H/4, W/4) attention flow picture in [0, 1], when asked for


class InpaintGenerator(nn.Module):
    """DeepFill v1 generator: coarse network, its output pasted into the hole, refinement network.

    Inputs in [-1, 1] (B, 3, H, W) and a mask (B, 1, H, W), 1 = hole; H and W multiples of 8. ``downsample``,
    ``padding`` and ``init`` choose between the release's behaviour (default) and the earlier PyTorch-style one.
    """

    def __init__(self, cnum: int = 32, use_contextual_attention: bool = True, ksize: int = 3, rate: int = 2,
                 fuse_k: int = 3, softmax_scale: float = 10.0, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 downsample: str = "release", padding: str = "same", init: str = "glorot") -> None:
        super().__init__()
        _check(init, "init", INIT_MODES)
        self.cnum = cnum
        self.coarse = CoarseGenerator(cnum, padding)
        attention = ContextualAttention(ksize, 1, rate, fuse_k, softmax_scale, memory_budget, downsample)
        self.refine = RefinementGenerator(cnum, use_contextual_attention, attention, padding, downsample)
        if init == "glorot":
            glorot_init_(self)

    def forward(self, image: Tensor, mask: Tensor, return_flow: bool = False) -> GeneratorOutput:
        incomplete = image * (1 - mask)
        coarse = self.coarse(generator_input(image, mask))
        pasted = coarse * mask + incomplete * (1 - mask)
        # release (inpaint_model.py, stage 2): the pasted image as it is, the coarse fill inside the hole
        refined, flow = self.refine(with_mask_channels(pasted, mask), mask, return_flow)
        return GeneratorOutput(coarse, refined, flow)


class WGANCritic(nn.Module):
    """DeepFill v1 critic: 5x5 stride-2 convs with leaky ReLU (0.2), flattened, one linear output (no sigmoid)."""

    def __init__(self, size: int, widths: tuple[int, ...], in_channels: int = 3, padding: str = "same") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:  # DeepFill v1 release: dis_conv, tf.layers.conv2d(x, cnum, 5, 2, 'SAME')
            layers += [make_conv(in_channels, width, 5, 2, padding=padding), nn.LeakyReLU(0.2, inplace=True)]
            in_channels = width
            size = -(-size // 2)
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(in_channels * size * size, 1)
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x).flatten(1)).squeeze(1)


class InpaintCritics(nn.Module):
    """The release's two critics: local on the hole's box (64-128-256-512) and global on the image (64-128-256-256)."""

    def __init__(self, image_size: int, box_size: int, cnum: int = 64, padding: str = "same",
                 init: str = "glorot") -> None:
        super().__init__()
        _check(init, "init", INIT_MODES)
        self.local = WGANCritic(box_size, (cnum, 2 * cnum, 4 * cnum, 8 * cnum), padding=padding)
        self.global_ = WGANCritic(image_size, (cnum, 2 * cnum, 4 * cnum, 4 * cnum), padding=padding)
        if init == "glorot":
            glorot_init_(self)

    def forward(self, local_patch: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.local(local_patch), self.global_(image)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
