"""PixPro: pixel-to-propagation consistency (Xie et al., "Propagate Yourself", CVPR 2021).

views -> online backbone -> 1x1-conv projector -> Pixel Propagation Module (``y``)
      -> momentum backbone -> momentum projector (``x'``)
loss = sum over positive pairs (normalised centre distance < pos_ratio) of -cos(y_i, x'_j), per image,
``-2 * mean``, both directions added (optimum -4). Optional PixPro+ instance branch (BYOL-style).
Follows the release's order of normalisations (docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import MethodConfig, opt
from pixelssl.dense.chunked import CellPairs, chunked_consistency, chunked_pixel_propagation
from pixelssl.losses import negative_cosine
from pixelssl.methods.base import Method, feature_channels
from pixelssl.methods.registry import register_method
from pixelssl.models.heads import ConvMLP, global_pool


@dataclass
class PixProConfig(MethodConfig):
    """PixPro: pixel-to-propagation consistency (PPM), optional PixPro+ instance branch."""

    pos_ratio: float = opt(0.7, "positive when centre distance / larger bin diagonal < this", gt=0)
    ppm_gamma: float = opt(2.0, "sharpness exponent of the propagation similarity", gt=0)
    ppm_transform_layers: int = opt(1, "value transform g: 0 = identity, 1 = 1x1 conv, 2 = conv-BN-ReLU-conv",
                                    choices=(0, 1, 2))
    ins_loss_weight: float = opt(0.0, "weight of the instance branch (0 = off; 1 in the paper's PixPro+)", ge=0)
    match_chunk_mib: float = opt(256.0, "memory budget (MiB) of one pairwise (B x rows x N) block of the matcher, "
                                        "loss and PPM; bigger maps run in row blocks (0 = never split)", ge=0)


def value_transform(layers: int, dim: int) -> nn.Module:
    """PPM's g: identity (0), one 1x1 conv (1, default) or conv-BN-ReLU-conv (2)."""
    if layers == 0:
        return nn.Identity()
    if layers == 1:
        return nn.Conv2d(dim, dim, 1)
    return ConvMLP(dim, dim, dim)


@register_method("pixpro", PixProConfig)
class PixPro(Method):
    """PixPro on a backbone that returns a (B, feature_dim, h, w) map (C5 of a ResNet: ``feature_dim`` 2048 for a
    ResNet-50, 512 for a ResNet-18; read from ``backbone.out_channels`` when it has one).

        >>> backbone = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])  # C5, no pooling
        >>> method = PixPro(backbone, feature_dim=512, proj_hidden_dim=1024, proj_dim=128)
        >>> method.momentum_update(method.momentum_at(step, total_steps)); loss = method(batch)["loss"]

    The other keywords are ``PixProConfig``'s keys (``method.*`` of the ``pixpro`` presets).
    """

    def __init__(self, backbone: nn.Module, *, feature_dim: int | None = None, proj_hidden_dim: int = 4096,
                 proj_dim: int = 256, pos_ratio: float = 0.7, ppm_gamma: float = 2.0, ppm_transform_layers: int = 1,
                 ins_loss_weight: float = 0.0, match_chunk_mib: float = 256.0, momentum: float = 0.99,
                 momentum_schedule: str = "cosine", **variant: Any) -> None:
        super().__init__(backbone, pos_ratio=pos_ratio, ppm_gamma=ppm_gamma, ppm_transform_layers=ppm_transform_layers,
                         ins_loss_weight=ins_loss_weight, match_chunk_mib=match_chunk_mib, momentum=momentum,
                         momentum_schedule=momentum_schedule, **variant)
        self.feature_dim = feature_channels(backbone, feature_dim)
        self.build_neck()
        hidden, dim = proj_hidden_dim, proj_dim
        self.projector = ConvMLP(self.dense_channels, hidden, dim)
        self.value_transform = value_transform(ppm_transform_layers, dim)
        self.gamma = float(ppm_gamma)
        self.pos_ratio = float(pos_ratio)
        self.chunk_mib = float(match_chunk_mib)
        self.instance_weight = float(ins_loss_weight)
        teachers = ["backbone", *self.neck_modules, "projector"]
        if self.instance_weight > 0:
            self.projector_instance = ConvMLP(self.feature_dim, hidden, dim)
            self.predictor = ConvMLP(dim, hidden, dim)
            teachers.append("projector_instance")
        self.add_teacher(*teachers)

    # ------------------------------------------------------------ what a variant changes (pixpro_fpn)
    neck_modules: tuple[str, ...] = ()  # modules between backbone and projector, each with a teacher copy
    level_names: tuple[str, ...] = ("c5",)  # the maps the dense loss is applied to

    def build_neck(self) -> None:
        """Create the neck modules from ``self.settings`` (none: the projector reads C5)."""

    @property
    def dense_channels(self) -> int:
        """Channels of the maps the projector reads."""
        return self.feature_dim

    def encode(self, view: Tensor, teacher: bool = False) -> tuple[list[Tensor], Tensor]:
        """(maps for the dense loss, one per level in ``level_names``; C5 for the instance branch) of one view."""
        c5 = (self.backbone_k if teacher else self.backbone)(view)
        return [c5], c5

    # ------------------------------------------------------------ the shared computation
    def level_loss(self, batch: dict[str, Tensor], maps: tuple[Tensor, Tensor],
                   keys: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Both directions of the consistency loss on one level: (loss, positives per image (B,)).

        Positives use the level's own cells: distances are in units of this level's cell diagonal (PixPro sec. 3.1),
        so the threshold ``pos_ratio`` means the same number of neighbouring cells at every level.
        """
        projections = [self.projector(m) for m in maps]
        props = [chunked_pixel_propagation(p, self.value_transform(p), self.gamma, self.chunk_mib) for p in projections]
        pairs = CellPairs.of_views(batch, tuple(maps[0].shape[-2:]), tuple(maps[1].shape[-2:]), self.pos_ratio)
        loss12, counts = chunked_consistency(props[0].flatten(2), keys[1].flatten(2), pairs, self.chunk_mib)
        loss21, _ = chunked_consistency(props[1].flatten(2), keys[0].flatten(2), pairs.transposed(), self.chunk_mib)
        return loss12 + loss21, counts

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = self.views(batch)
        (maps1, c5_1), (maps2, c5_2) = [self.encode(v) for v in views]
        with torch.no_grad():
            teacher = [self.encode(v, teacher=True) for v in views]
            keys = [[F.normalize(self.projector_k(m), dim=1) for m in maps] for maps, _ in teacher]

        out: dict[str, Tensor] = {}
        losses, positives = [], []
        for level, name in enumerate(self.level_names):
            loss, counts = self.level_loss(batch, (maps1[level], maps2[level]), (keys[0][level], keys[1][level]))
            losses.append(loss)
            positives.append(counts.float().mean())
            if len(self.level_names) > 1:
                out[f"loss_dense_{name}"] = loss.detach()
        dense = losses[0] if len(losses) == 1 else torch.stack(losses).mean()  # levels weigh equally
        out.update(loss_dense=dense, positives_per_image=sum(positives) / len(positives))
        loss = dense
        if self.instance_weight > 0:
            # PixPro+: per-pixel projector and predictor, *then* average pooling (release order).
            preds = [global_pool(self.predictor(self.projector_instance(f))) for f in (c5_1, c5_2)]
            with torch.no_grad():
                targets = [global_pool(self.projector_instance_k(c5)) for _, c5 in teacher]
            instance = negative_cosine(preds[0], targets[1]) + negative_cosine(preds[1], targets[0])
            out["loss_instance"] = instance
            loss = loss + self.instance_weight * instance
        out["loss"] = loss
        return out
