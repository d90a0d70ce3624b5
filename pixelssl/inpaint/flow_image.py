"""Attention offsets as a picture: the optical-flow colour wheel of the release's ``compute_color``, for the flow
output of the contextual attention layer (and the web page's flow view).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def color_wheel() -> Tensor:
    """The Middlebury optical-flow colour wheel (Baker et al. 2011), 55 RGB colours in [0, 255] (float)."""
    segments = ((15, (255, 0, 0), (0, 1, 0)), (6, (255, 255, 0), (-1, 0, 0)), (4, (0, 255, 0), (0, 0, 1)),
                (11, (0, 255, 255), (0, -1, 0)), (13, (0, 0, 255), (1, 0, 0)), (6, (255, 0, 255), (0, 0, -1)))
    parts = []
    for n, start, direction in segments:  # each segment ramps one channel up or down by floor(255 * i / n)
        ramp = torch.floor(255 * torch.arange(n, dtype=torch.float64) / n)
        parts.append(torch.tensor(start, dtype=torch.float64) + ramp[:, None] * torch.tensor(direction))
    return torch.cat(parts).float()


def flow_to_image(offsets: Tensor) -> Tensor:
    """Render (B, 2, H, W) offsets (rows, columns) with the optical-flow colour wheel: (B, 3, H, W) in [0, 1].

    Same colouring as the release's ``compute_color``: hue from the direction, saturation from the length
    relative to the image's longest offset; an offset of 0 is white.
    """
    flow = offsets.double()
    u, v = flow[:, 0], flow[:, 1]
    radius = torch.sqrt(u * u + v * v)
    max_radius = radius.flatten(1).amax(dim=1).view(-1, 1, 1) + torch.finfo(torch.float64).eps
    u, v, radius = u / max_radius, v / max_radius, radius / max_radius
    wheel = color_wheel().double().to(offsets.device) / 255
    ncols = wheel.shape[0]
    fk = (torch.atan2(-v, -u) / math.pi + 1) / 2 * (ncols - 1)  # 0-based position on the wheel
    k0 = fk.floor().long()
    k1 = (k0 + 1) % ncols
    frac = (fk - k0).unsqueeze(-1)
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (B, H, W, 3)
    inside = (radius <= 1).unsqueeze(-1)
    colour = torch.where(inside, 1 - radius.unsqueeze(-1) * (1 - colour), colour * 0.75)
    return (torch.floor(255 * colour) / 255).permute(0, 3, 1, 2).float()
