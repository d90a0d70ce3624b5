"""PixPro: pixel-to-propagation consistency (Xie et al., "Propagate Yourself", CVPR 2021).

views -> online backbone -> 1x1-conv projector -> Pixel Propagation Module (``y``)
      -> momentum backbone -> momentum projector (``x'``)
loss = sum over positive pairs (normalised centre distance < pos_ratio) of -cos(y_i, x'_j), per image,
``-2 * mean``, both directions added (optimum -4). Optional PixPro+ instance branch (BYOL-style).
Follows the release's order of normalisations (``../shared/METHODS.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import PretrainConfig
from pixelssl.dense.propagation import pixel_propagation
from pixelssl.losses import negative_cosine, pixpro_consistency
from pixelssl.methods.base import Method
from pixelssl.methods.registry import register_method
from pixelssl.models.heads import ConvMLP, global_pool


def value_transform(layers: int, dim: int) -> nn.Module:
    """PPM's g: identity (0), one 1x1 conv (1, default) or conv-BN-ReLU-conv (2)."""
    if layers == 0:
        return nn.Identity()
    if layers == 1:
        return nn.Conv2d(dim, dim, 1)
    return ConvMLP(dim, dim, dim)


@register_method("pixpro")
class PixPro(Method):
    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__(cfg)
        channels, hidden, dim = self.backbone.out_channels, cfg.model.proj_hidden_dim, cfg.model.proj_dim
        self.projector = ConvMLP(channels, hidden, dim)
        self.value_transform = value_transform(cfg.method.ppm_transform_layers, dim)
        self.gamma = float(cfg.method.ppm_gamma)
        self.pos_ratio = float(cfg.method.pos_ratio)
        self.instance_weight = float(cfg.method.ins_loss_weight)
        teachers = ["backbone", "projector"]
        if self.instance_weight > 0:
            self.projector_instance = ConvMLP(channels, hidden, dim)
            self.predictor = ConvMLP(dim, hidden, dim)
            teachers.append("projector_instance")
        self.add_teacher(*teachers)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = self.views(batch)
        feats = [self.backbone(v) for v in views]
        projections = [self.projector(f) for f in feats]
        props = [pixel_propagation(p, self.value_transform(p), self.gamma) for p in projections]
        with torch.no_grad():
            feats_k = [self.backbone_k(v) for v in views]
            keys = [F.normalize(self.projector_k(f), dim=1) for f in feats_k]

        shape = tuple(feats[0].shape[-2:])
        pos = self.coordinate_positives(batch, shape, self.pos_ratio)  # (B, N1, N2)
        dense = (pixpro_consistency(props[0].flatten(2), keys[1].flatten(2), pos)
                 + pixpro_consistency(props[1].flatten(2), keys[0].flatten(2), pos.transpose(1, 2)))
        out = {"loss_dense": dense, "positives_per_image": pos.sum(dim=(1, 2)).float().mean()}
        loss = dense
        if self.instance_weight > 0:
            # PixPro+: per-pixel projector and predictor, *then* average pooling (release order).
            preds = [global_pool(self.predictor(self.projector_instance(f))) for f in feats]
            with torch.no_grad():
                targets = [global_pool(self.projector_instance_k(f)) for f in feats_k]
            instance = negative_cosine(preds[0], targets[1]) + negative_cosine(preds[1], targets[0])
            out["loss_instance"] = instance
            loss = loss + self.instance_weight * instance
        out["loss"] = loss
        return out
