"""The MoCo-v2(+) core with a dense branch that DenseCL and the PixCon family are built on.

views -> online backbone (C5 map) -+-> global pool -> projector -> [predictor] -> normalise  (global query)
                                   +-> dense projector (1x1 convs) -> [dense predictor] -> normalise  (dense queries)
      -> momentum backbone + projectors (no predictors)                               (global / dense keys)
matching (subclass): for each query cell of view a, its positive key cell of view b and the weight of its term.
loss per direction a -> b: ``(1 - lambda) * InfoNCE(global) + lambda * sum_i w_i l_i / sum_i w_i`` with the global
queue and the dense queue as negatives; both directions added (``symmetric``, PixCon release) or view 1 -> view 2
only (DenseCL release). Queues: the global keys and one vector per image for the dense queue, the spatial mean of
the momentum dense projection, L2-normalised (DenseCL / PixCon ``k2``); each step enqueues the keys of one
randomly chosen view (PixCon; DenseCL enqueues its key view, view 2).

Config switches give the DenseCL -> PixCon ablation: ``method.head_bn`` (BN in the heads), ``method.predictor``
(online predictors), ``method.symmetric``, ``method.momentum_schedule`` (constant 0.999 -> cosine 0.99 -> 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pixelssl.config import Problems, opt
from pixelssl.dense.matching import cells_in_other_view, feature_argmax, gather_cells, intersection_grid_cells
from pixelssl.losses import dense_info_nce, info_nce
from pixelssl.methods.base import Method, feature_channels, shuffled_forward
from pixelssl.methods.moco import MoCoConfig
from pixelssl.models.heads import MLP, ConvMLP, global_pool
from pixelssl.models.queue import FeatureQueue


@dataclass
class DenseMoCoConfig(MoCoConfig):
    """The MoCo-v2(+) core with a dense branch (DenseCL, PixCon): MoCo's keys, the dense loss weight and the
    MoCo-v2+ switches."""

    queue_size: int = opt(65536, "length of the two negatives queues, global and dense (65536 in DenseCL and PixCon, "
                                 "4096 in the demo presets)", ge=0)
    loss_lambda: float = opt(0.5, "dense loss weight, total = (1 - lambda) * global + lambda * dense", ge=0, le=1)
    head_bn: bool = opt(True, "BatchNorm in the projection / prediction heads (MoCo-v2+; false = DenseCL's heads)")
    predictor: bool = opt(True, "global and dense predictors on the online side (MoCo-v2+; false = MoCo-v2 / "
                                "DenseCL)")

    def problems(self) -> Problems:
        if self.queue_size < 1:
            yield "queue_size", (f"{self.name} takes its negatives from a queue: set it >= 1 (65536 in the paper, "
                                 f"4096 in the demo presets)")


class DenseMoCo(Method):
    """Shared core; a subclass states its matching in ``match`` (default: argmax of backbone-feature cosine).

    Built on a backbone that returns a (B, feature_dim, h, w) map: ``DenseCL(backbone, feature_dim=512,
    queue_size=4096, head_bn=False, predictor=False, symmetric=False)``; the keywords are ``DenseMoCoConfig``'s keys
    (and the PixCon variants' own).
    """

    release_inbox = False  # which query cells are in-box (query_cells_in_box): PixCon's method.inbox_rule

    def __init__(self, backbone: nn.Module, *, feature_dim: int | None = None, proj_hidden_dim: int = 4096,
                 proj_dim: int = 256, temperature: float = 0.3, queue_size: int = 65536, shuffle_bn_groups: int = 1,
                 symmetric: bool = True, loss_lambda: float = 0.5, head_bn: bool = True, predictor: bool = True,
                 momentum: float = 0.99, momentum_schedule: str = "cosine", **variant: Any) -> None:
        super().__init__(backbone, temperature=temperature, queue_size=queue_size, shuffle_bn_groups=shuffle_bn_groups,
                         symmetric=symmetric, loss_lambda=loss_lambda, head_bn=head_bn, predictor=predictor,
                         momentum=momentum, momentum_schedule=momentum_schedule, **variant)
        channels, hidden, dim = feature_channels(backbone, feature_dim), proj_hidden_dim, proj_dim
        bn = bool(head_bn)
        self.projector = MLP(channels, hidden, dim, batch_norm=bn)
        self.dense_projector = ConvMLP(channels, hidden, dim, batch_norm=bn)
        # Predictors on the online side only (MoCo-v2+ / BYOL asymmetry); identity for the MoCo-v2 recipe.
        self.predictor = MLP(dim, hidden, dim, batch_norm=bn) if predictor else nn.Identity()
        self.dense_predictor = ConvMLP(dim, hidden, dim, batch_norm=bn) if predictor else nn.Identity()
        self.queue = FeatureQueue(dim, queue_size)
        self.dense_queue = FeatureQueue(dim, queue_size)
        self.temperature = float(temperature)
        self.loss_lambda = float(loss_lambda)
        self.symmetric = bool(symmetric)
        self.shuffle_groups = int(shuffle_bn_groups)
        self.add_teacher("backbone", "projector", "dense_projector")

    # ----------------------------------------------------------------- matching (what differs per method)
    def match(self, query_feats: Tensor, key_feats: Tensor, batch: dict[str, Tensor], query_view: int,
              key_view: int) -> tuple[Tensor, Tensor]:
        """Positive key cell ``index`` (B, N1) and loss weight (B, N1) of each query cell.

        ``query_feats`` / ``key_feats`` are the online / momentum backbone maps (B, C, H, W) of views
        ``query_view`` / ``key_view`` (1 or 2). Default (DenseCL, PixCon-Sim): ``j* = argmax_j cos(b_q_i, b_k_j)``,
        every query weighted 1.
        """
        _, index = feature_argmax(query_feats.flatten(2), key_feats.flatten(2))
        return index, torch.ones(index.shape, device=index.device)

    def query_cells_in_box(self, batch: dict[str, Tensor], query_view: int, key_view: int,
                           shape: tuple[int, int]) -> Tensor:
        """(B, N) query cells inside the views' intersection (PixCon's ``inbox_rule``: centre or the release's
        grid)."""
        box_q, flip_q = self.geometry(batch, query_view)
        box_k = self.geometry(batch, key_view)[0]
        rule = intersection_grid_cells if self.release_inbox else cells_in_other_view
        return rule(box_q, flip_q, shape, box_k)

    # ----------------------------------------------------------------- the step
    def _query(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised global query (B, D) and dense queries (B, D, N) of an online backbone map."""
        global_q = F.normalize(self.predictor(self.projector(global_pool(feats))), dim=1)
        dense_q = F.normalize(self.dense_predictor(self.dense_projector(feats)), dim=1)
        return global_q, dense_q.flatten(2)

    @torch.no_grad()
    def _key(self, feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised global key (B, D), dense keys (B, D, N) and pooled dense key (B, D) of a momentum map."""
        global_k = F.normalize(self.projector_k(global_pool(feats)), dim=1)
        dense = self.dense_projector_k(feats)
        return global_k, F.normalize(dense, dim=1).flatten(2), F.normalize(global_pool(dense), dim=1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        views = self.views(batch)
        directions = [(0, 1), (1, 0)] if self.symmetric else [(0, 1)]
        online = {a: self.backbone(views[a]) for a, _ in directions}
        with torch.no_grad():  # shuffled BN on the key backbone (MoCo / DenseCL, whose heads have no BN)
            momentum = {b: shuffled_forward(self.backbone_k, views[b], self.shuffle_groups) for _, b in directions}
            keys = {b: self._key(f) for b, f in momentum.items()}
        negatives, dense_negatives = self.queue.snapshot(), self.dense_queue.snapshot()

        loss_global = loss_dense = weight = 0.0
        for a, b in directions:
            global_q, dense_q = self._query(online[a])
            global_k, dense_k, _ = keys[b]
            with torch.no_grad():
                index, weights = self.match(online[a].detach(), momentum[b], batch, a + 1, b + 1)
            loss_global = loss_global + info_nce(global_q, global_k, negatives, self.temperature)
            loss_dense = loss_dense + dense_info_nce(dense_q, gather_cells(dense_k, index), dense_negatives,
                                                     self.temperature, weights)
            weight = weight + weights.float().mean() / len(directions)
        loss = (1.0 - self.loss_lambda) * loss_global + self.loss_lambda * loss_dense

        # One view's keys per step, the same view for both queues: a random one when symmetric, else the key view.
        pick = int(torch.randint(2, ())) if self.symmetric else 1
        self.queue.enqueue(keys[pick][0])
        self.dense_queue.enqueue(keys[pick][2])
        return {"loss": loss, "loss_global": loss_global, "loss_dense": loss_dense, "dense_weight": weight}
