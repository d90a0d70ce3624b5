"""MoCo-v2 (Chen et al., 2020): instance-level InfoNCE against a queue, the control for every dense method.

views -> backbone -> global pool -> MLP head (FC -> ReLU -> FC, no BN) -> normalise (queries);
momentum copies give keys (with shuffled BatchNorm groups). As released (``method.symmetric=false``,
facebookresearch/moco ``builder.py``): queries of view 1 against keys of view 2, whose keys are enqueued.
``method.symmetric=true`` (MoCo-v2+ / v3 style): mean of both directions, one randomly chosen view's keys enqueued.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import MethodConfig, opt
from pixelssl.losses import info_nce
from pixelssl.methods.base import Method, feature_channels, shuffled_forward
from pixelssl.methods.registry import register_method
from pixelssl.models.heads import MLP, global_pool
from pixelssl.models.queue import FeatureQueue


@dataclass
class MoCoConfig(MethodConfig):
    """MoCo-v2: instance InfoNCE against a queue of keys (the control for every dense method)."""

    temperature: float = opt(0.3, "InfoNCE temperature (0.2 in MoCo-v2, DenseCL and PixCon)", gt=0)
    queue_size: int = opt(0, "negatives queue length (0 = no queue: MoCo takes the batch's other keys; 65536 in "
                             "MoCo-v2, DenseCL and PixCon, which need one)", ge=0)
    shuffle_bn_groups: int = opt(1, "split the key batch into this many shuffled BN groups (1 = off)", ge=1)
    symmetric: bool = opt(True, "add the loss of both directions and enqueue a random view's keys (false = view 1 "
                                "-> view 2 only, enqueueing view 2's keys, as the MoCo-v2 and DenseCL releases)")


@register_method("moco", MoCoConfig)
class MoCo(Method):
    """MoCo-v2 on a backbone that returns a (B, feature_dim, h, w) map (pooled here): ``MoCo(backbone,
    feature_dim=512, queue_size=65536, temperature=0.2)``; the keywords are ``MoCoConfig``'s keys."""

    def __init__(self, backbone: nn.Module, *, feature_dim: int | None = None, proj_hidden_dim: int = 4096,
                 proj_dim: int = 256, temperature: float = 0.3, queue_size: int = 0, shuffle_bn_groups: int = 1,
                 symmetric: bool = True, momentum: float = 0.99, momentum_schedule: str = "cosine") -> None:
        super().__init__(backbone, temperature=temperature, queue_size=queue_size, shuffle_bn_groups=shuffle_bn_groups,
                         symmetric=symmetric, momentum=momentum, momentum_schedule=momentum_schedule)
        self.head = MLP(feature_channels(backbone, feature_dim), proj_hidden_dim, proj_dim)
        self.temperature = float(temperature)
        self.shuffle_groups = int(shuffle_bn_groups)
        self.queue = FeatureQueue(proj_dim, queue_size) if queue_size > 0 else None
        self.symmetric = bool(symmetric)
        self.add_teacher("backbone", "head")

    def _key(self, view: Tensor) -> Tensor:
        return F.normalize(self.head_k(global_pool(shuffled_forward(self.backbone_k, view, self.shuffle_groups))), dim=1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = self.views(batch)
        negatives = self.queue.snapshot() if self.queue is not None else None
        if not self.symmetric:  # the release: one direction, view 2's keys enqueued
            query = F.normalize(self.head(global_pool(self.backbone(views[0]))), dim=1)
            with torch.no_grad():
                key = self._key(views[1])
            loss = info_nce(query, key, negatives, self.temperature)
            if self.queue is not None:
                self.queue.enqueue(key)
            return {"loss": loss}
        queries = [F.normalize(self.head(global_pool(self.backbone(v))), dim=1) for v in views]
        with torch.no_grad():
            keys = [self._key(v) for v in views]
        loss = 0.5 * (info_nce(queries[0], keys[1], negatives, self.temperature)
                      + info_nce(queries[1], keys[0], negatives, self.temperature))
        if self.queue is not None:
            self.queue.enqueue(keys[int(torch.randint(2, ()))])
        return {"loss": loss}
