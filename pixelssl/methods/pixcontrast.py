"""PixContrast: pixel-level InfoNCE (the contrastive baseline of the PixPro paper, sec. 3.2).

views -> online backbone -> 1x1-conv projector (queries) / momentum copies (keys); for a query pixel of
view 1 the key pixels of view 2 closer than ``pos_ratio`` are positives and the other key pixels (plus an
optional queue of per-image pooled keys) are negatives; averaged over query pixels inside the views'
intersection, then symmetrised (mean of the two directions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import MethodConfig, opt
from pixelssl.losses import pixel_info_nce
from pixelssl.methods.base import Method, feature_channels
from pixelssl.methods.registry import register_method
from pixelssl.models.heads import ConvMLP, global_pool
from pixelssl.models.queue import FeatureQueue


@dataclass
class PixContrastConfig(MethodConfig):
    """PixContrast: pixel-level InfoNCE with PixPro's positives (the PixPro paper's contrastive baseline)."""

    pos_ratio: float = opt(0.7, "positive when centre distance / larger bin diagonal < this", gt=0)
    temperature: float = opt(0.3, "InfoNCE temperature (0.3 in the PixPro paper)", gt=0)
    queue_size: int = opt(0, "queue of per-image pooled keys as extra negatives (0 = none)", ge=0)


@register_method("pixcontrast", PixContrastConfig)
class PixContrast(Method):
    """PixContrast on a backbone that returns a (B, feature_dim, h, w) map: ``PixContrast(backbone,
    feature_dim=512, temperature=0.3)``; the keywords are ``PixContrastConfig``'s keys."""

    def __init__(self, backbone: nn.Module, *, feature_dim: int | None = None, proj_hidden_dim: int = 4096,
                 proj_dim: int = 256, pos_ratio: float = 0.7, temperature: float = 0.3, queue_size: int = 0,
                 momentum: float = 0.99, momentum_schedule: str = "cosine") -> None:
        super().__init__(backbone, pos_ratio=pos_ratio, temperature=temperature, queue_size=queue_size,
                         momentum=momentum, momentum_schedule=momentum_schedule)
        self.projector = ConvMLP(feature_channels(backbone, feature_dim), proj_hidden_dim, proj_dim)
        self.pos_ratio = float(pos_ratio)
        self.temperature = float(temperature)
        self.queue = FeatureQueue(proj_dim, queue_size) if queue_size > 0 else None
        self.add_teacher("backbone", "projector")

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = self.views(batch)
        queries = [F.normalize(self.projector(self.backbone(v)), dim=1) for v in views]
        with torch.no_grad():
            keys = [F.normalize(self.projector_k(self.backbone_k(v)), dim=1) for v in views]

        shape = tuple(queries[0].shape[-2:])
        pos = self.coordinate_positives(batch, shape, self.pos_ratio)
        inside1, inside2 = self.intersection_cells(batch, shape)
        negatives = self.queue.snapshot() if self.queue is not None else None
        q1, q2, k1, k2 = (t.flatten(2) for t in (*queries, *keys))
        loss = 0.5 * (pixel_info_nce(q1, k2, pos, inside1, self.temperature, negatives)
                      + pixel_info_nce(q2, k1, pos.transpose(1, 2), inside2, self.temperature, negatives))
        if self.queue is not None:  # one randomly chosen view's pooled keys per step (as DenseCL / PixCon)
            pick = int(torch.randint(2, ()))
            self.queue.enqueue(F.normalize(global_pool(keys[pick]), dim=1))
        return {"loss": loss, "valid_pixels": (inside1.sum() + inside2.sum()).float() / (2 * inside1.shape[0])}
