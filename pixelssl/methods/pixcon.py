"""PixCon (Pang et al., "Revisiting Pixel-Level Contrastive Pre-Training on Scene Images", WACV 2024; authors'
release on MMSelfSup): pixel-level InfoNCE on the MoCo-v2+ core (``pixelssl.methods.dense_moco``), three ways to
choose each query pixel's positive.

- ``pixcon_coord``: the key cell at the same image location (geometrically nearest centre, ``dense.geometry``);
  query cells outside the views' intersection are dropped.
- ``pixcon_sim``: the key cell of highest backbone-feature cosine (DenseCL's matching in the MoCo-v2+ pipeline).
- ``pixcon_sr``: Sim matching with semantic reweighting (see ``PixConSR``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from pixelssl.config import opt
from pixelssl.dense.matching import feature_argmax, nearest_cell, semantic_weights
from pixelssl.methods.dense_moco import DenseMoCo, DenseMoCoConfig
from pixelssl.methods.registry import register_method


@dataclass
class PixConConfig(DenseMoCoConfig):
    """PixCon-Coord / PixCon-Sim: the MoCo-v2+ core's keys and which query cells count as in-box."""

    inbox_rule: str = opt("centre", "which query cells count as inside the views' intersection: centre (cell centre "
                                    "inside the other view's box) | release (the intersection box in the query view's "
                                    "own coordinates, scaled to the map's grid and truncated, as the PixCon release's "
                                    "7x7 masks)", choices=("centre", "release"))


@dataclass
class PixConSRConfig(PixConConfig):
    """PixCon-SR: PixCon-Sim with semantic reweighting of each query's term."""

    sr_weights: str = opt("semantic", "semantic (similarity-based, in-box 1) | spatial (in-box 1, out-of-box 0: the "
                                      "paper's 'SR (Spa.)')", choices=("semantic", "spatial"))
    sr_power: float = opt(2.0, "sharpening power p of the semantic weights, w ** p", gt=0)


class PixCon(DenseMoCo):
    """The PixCon variants' shared part: ``inbox_rule`` picks the in-box query cells; the other keywords are the
    MoCo-v2+ core's (``DenseMoCo``)."""

    def __init__(self, backbone: nn.Module, *, inbox_rule: str = "centre", **core: Any) -> None:
        super().__init__(backbone, inbox_rule=inbox_rule, **core)
        self.release_inbox = inbox_rule == "release"


@register_method("pixcon_coord", PixConConfig)
class PixConCoord(PixCon):
    """Coordinate matching: ``j* = argmin_j ||c_i - c'_j||``; weight 1 inside the views' intersection, else 0."""

    def match(self, query_feats: Tensor, key_feats: Tensor, batch: dict[str, Tensor], query_view: int,
              key_view: int) -> tuple[Tensor, Tensor]:
        shape_q, shape_k = tuple(query_feats.shape[-2:]), tuple(key_feats.shape[-2:])
        index, _ = nearest_cell(*self.geometry(batch, query_view), shape_q, *self.geometry(batch, key_view), shape_k)
        return index, self.query_cells_in_box(batch, query_view, key_view, shape_q).float()


@register_method("pixcon_sim", PixConConfig)
class PixConSim(PixCon):
    """Similarity matching (the core's default): ``j* = argmax_j cos(b_q_i, b_k_j)``, every query weighted 1."""


@register_method("pixcon_sr", PixConSRConfig)
class PixConSR(PixCon):
    """PixCon-SR: Sim matching, each query's InfoNCE term weighted by how well its match agrees with its location.

    With ``s_i = max_j cos(b_q_i, b_k_j)`` on the online / momentum C5 maps (no gradient) and ``in_i`` = query cell
    i inside the views' intersection, per image (PixCon's semantic reweighting; authors' release,
    ``calc_dense_loss``):
        ``w_i = 1`` if ``in_i``, else ``((s_i - min_all s) / (max_{not in} s - min_all s)) ** p``   (p = 2)
        ``L_dense = sum_i w_i l_i / sum_i w_i`` over the batch, per direction; directions added.
    Degenerate images (every cell in-box, or all similarities equal) get w = 1 everywhere
    (``dense.matching.semantic_weights``). ``method.sr_weights=spatial`` is the paper's "SR (Spa.)" ablation:
    1 in-box, 0 outside.
    """

    def __init__(self, backbone: nn.Module, *, sr_weights: str = "semantic", sr_power: float = 2.0,
                 **pixcon: Any) -> None:
        super().__init__(backbone, sr_weights=sr_weights, sr_power=sr_power, **pixcon)
        self.power = float(sr_power)
        self.spatial_only = sr_weights == "spatial"

    def match(self, query_feats: Tensor, key_feats: Tensor, batch: dict[str, Tensor], query_view: int,
              key_view: int) -> tuple[Tensor, Tensor]:
        similarity, index = feature_argmax(query_feats.flatten(2), key_feats.flatten(2))
        inside = self.query_cells_in_box(batch, query_view, key_view, tuple(query_feats.shape[-2:]))
        return index, semantic_weights(similarity, inside, self.power, self.spatial_only)
