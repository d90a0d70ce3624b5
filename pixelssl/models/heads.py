"""Projection and prediction heads: 1x1-conv MLPs for dense features, linear MLPs for pooled features."""

from __future__ import annotations

from torch import Tensor, nn


class ConvMLP(nn.Sequential):
    """1x1 conv -> BN -> ReLU -> 1x1 conv applied at every pixel (PixPro's projector; biases on as in the release)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_dim, hidden_dim, 1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Conv2d(hidden_dim, out_dim, 1)]
        super().__init__(*layers)


class MLP(nn.Sequential):
    """Linear -> (BN) -> ReLU -> Linear on pooled features (MoCo-v2 head has no BN; MoCo-v2+ / BYOL heads do)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        super().__init__(*layers)


def global_pool(features: Tensor) -> Tensor:
    """Average over all spatial positions: (B, C, H, W) -> (B, C)."""
    return features.mean(dim=(2, 3))
