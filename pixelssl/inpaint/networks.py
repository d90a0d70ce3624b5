"""DeepFill v1 networks: coarse-to-fine generator with contextual attention, and global + local WGAN critics.

Layer by layer as the authors' v1.0.0 release (``../shared/METHODS.md``): ELU after every conv but the last,
'same' zero padding, nearest x2 upsampling followed by a 3x3 conv, outputs clipped to [-1, 1]. Deviation: stride-2
convs pad symmetrically (PyTorch) where TensorFlow's 'SAME' pads one pixel more at the bottom/right; same shapes.

Example::

    g = InpaintGenerator(cnum=32)
    coarse, refined, flow = g(image, mask)  # image in [-1, 1], mask 1 = hole, both (B, *, H, W), H, W % 8 == 0
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.inpaint.contextual_attention import DEFAULT_MEMORY_BUDGET, ContextualAttention

# A conv layer of the release's generator: (output channels as a multiple of cnum, kernel, stride, dilation).
Spec = tuple[float, int, int, int]


class GenConv(nn.Sequential):
    """DeepFill v1 ``gen_conv``: conv with 'same' padding (optionally strided or dilated), then ELU unless disabled."""

    def __init__(self, cin: int, cout: int, ksize: int = 3, stride: int = 1, dilation: int = 1,
                 activation: str = "elu") -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, ksize, stride, dilation * (ksize - 1) // 2, dilation)]
        if activation == "elu":
            layers.append(nn.ELU(inplace=True))
        elif activation == "relu":
            layers.append(nn.ReLU(inplace=True))
        elif activation != "none":
            raise ValueError(f"unknown activation {activation!r}")
        super().__init__(*layers)


class GenDeconv(nn.Sequential):
    """DeepFill v1 ``gen_deconv``: nearest-neighbour x2 upsampling, then a 3x3 ``gen_conv``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), GenConv(cin, cout, 3))


def conv_stack(cin: int, cnum: int, specs: list[Spec], last_activation: str = "elu") -> tuple[nn.Sequential, int]:
    """A chain of ``GenConv`` from (width multiple, kernel, stride, dilation) specs; returns it and its output width."""
    layers = []
    for n, (mult, ksize, stride, dilation) in enumerate(specs):
        cout = int(mult * cnum)
        layers.append(GenConv(cin, cout, ksize, stride, dilation, last_activation if n == len(specs) - 1 else "elu"))
        cin = cout
    return nn.Sequential(*layers), cin


def decoder(cin: int, cnum: int) -> nn.Sequential:
    """The release's shared decoder tail: up x2 (2c), conv (2c), up x2 (c), conv (c/2), conv to RGB (no activation)."""
    return nn.Sequential(GenDeconv(cin, 2 * cnum), GenConv(2 * cnum, 2 * cnum), GenDeconv(2 * cnum, cnum),
                         GenConv(cnum, cnum // 2), GenConv(cnum // 2, 3, activation="none"))


DILATED = [(4, 3, 1, 2), (4, 3, 1, 4), (4, 3, 1, 8), (4, 3, 1, 16)]  # DeepFill v1: dilations 2, 4, 8, 16 at 1/4
COARSE = [(1, 5, 1, 1), (2, 3, 2, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1),
          *DILATED, (4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_CONV = [(1, 5, 1, 1), (1, 3, 2, 1), (2, 3, 1, 1), (2, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1), *DILATED]
REFINE_ATTENTION_IN = [(1, 5, 1, 1), (1, 3, 2, 1), (2, 3, 1, 1), (4, 3, 2, 1), (4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_ATTENTION_OUT = [(4, 3, 1, 1), (4, 3, 1, 1)]
REFINE_MERGE = [(4, 3, 1, 1), (4, 3, 1, 1)]


def generator_input(image: Tensor, mask: Tensor) -> Tensor:
    """DeepFill v1 input: the image with its hole zeroed, a ones channel and ones * mask (5 channels)."""
    ones = torch.ones_like(mask)
    return torch.cat([image * (1 - mask), ones, ones * mask], dim=1)


class CoarseGenerator(nn.Module):
    """Stage 1: encoder (two stride-2 convs), dilated convs 2/4/8/16 at 1/4 resolution, decoder; clipped to [-1, 1]."""

    def __init__(self, cnum: int = 32) -> None:
        super().__init__()
        self.encoder, width = conv_stack(5, cnum, COARSE)
        self.decoder = decoder(width, cnum)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x)).clamp(-1, 1)


class RefinementGenerator(nn.Module):
    """Stage 2: a dilated-conv branch and a contextual-attention branch on the pasted coarse result, merged, decoded.

    ``use_contextual_attention=False`` is the ablation: the attention branch keeps its convs but skips the layer.
    """

    def __init__(self, cnum: int = 32, use_contextual_attention: bool = True,
                 attention: ContextualAttention | None = None) -> None:
        super().__init__()
        self.use_contextual_attention = use_contextual_attention
        self.conv_branch, conv_width = conv_stack(5, cnum, REFINE_CONV)
        self.attention_in, width = conv_stack(5, cnum, REFINE_ATTENTION_IN, last_activation="relu")
        self.attention = attention or ContextualAttention()
        self.attention_out, attention_width = conv_stack(width, cnum, REFINE_ATTENTION_OUT)
        self.merge, merged = conv_stack(conv_width + attention_width, cnum, REFINE_MERGE)
        self.decoder = decoder(merged, cnum)

    def forward(self, x: Tensor, mask: Tensor, return_flow: bool = False) -> tuple[Tensor, Tensor | None]:
        hallucinated = self.conv_branch(x)
        features = self.attention_in(x)
        flow = None
        if self.use_contextual_attention:
            mask_small = F.interpolate(mask, size=features.shape[-2:], mode="nearest")  # release: resize_mask_like
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

    Inputs in [-1, 1] (B, 3, H, W) and a mask (B, 1, H, W), 1 = hole; H and W multiples of 8.
    """

    def __init__(self, cnum: int = 32, use_contextual_attention: bool = True, ksize: int = 3, rate: int = 2,
                 fuse_k: int = 3, softmax_scale: float = 10.0, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> None:
        super().__init__()
        self.cnum = cnum
        self.coarse = CoarseGenerator(cnum)
        attention = ContextualAttention(ksize, 1, rate, fuse_k, softmax_scale, memory_budget)
        self.refine = RefinementGenerator(cnum, use_contextual_attention, attention)

    def forward(self, image: Tensor, mask: Tensor, return_flow: bool = False) -> GeneratorOutput:
        incomplete = image * (1 - mask)
        coarse = self.coarse(generator_input(image, mask))
        pasted = coarse * mask + incomplete * (1 - mask)  # release: the refinement sees the coarse hole only
        refined, flow = self.refine(generator_input(pasted, mask), mask, return_flow)
        return GeneratorOutput(coarse, refined, flow)


class WGANCritic(nn.Module):
    """DeepFill v1 critic: 5x5 stride-2 convs with leaky ReLU (0.2), flattened, one linear output (no sigmoid)."""

    def __init__(self, size: int, widths: tuple[int, ...], in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 5, 2, 2), nn.LeakyReLU(0.2, inplace=True)]
            in_channels = width
            size = -(-size // 2)
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(in_channels * size * size, 1)
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x).flatten(1)).squeeze(1)


class InpaintCritics(nn.Module):
    """The release's two critics: local on the hole's box (64-128-256-512) and global on the image (64-128-256-256)."""

    def __init__(self, image_size: int, box_size: int, cnum: int = 64) -> None:
        super().__init__()
        self.local = WGANCritic(box_size, (cnum, 2 * cnum, 4 * cnum, 8 * cnum))
        self.global_ = WGANCritic(image_size, (cnum, 2 * cnum, 4 * cnum, 4 * cnum))

    def forward(self, local_patch: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        return self.local(local_patch), self.global_(image)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
