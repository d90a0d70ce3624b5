"""What every pre-training method shares: the two-view batch, teacher (momentum) copies, geometry lookups."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pixelssl.config import PretrainConfig
from pixelssl.dense.matching import cells_in_other_view, coordinate_positives
from pixelssl.models.backbones import Backbone, build_backbone
from pixelssl.models.momentum import cosine_momentum, ema_update_, make_teacher


class Method(nn.Module):
    """A self-supervised method: ``forward(batch) -> {"loss": total, <named parts>...}``.

    ``backbone`` is the online encoder used for evaluation and export. Teachers registered with
    ``add_teacher("projector")`` become ``projector_k`` and follow ``momentum_update``.
    """

    method_name: str = ""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.base_momentum = float(cfg.method.momentum)
        self.momentum_schedule = str(cfg.method.momentum_schedule)
        self._teachers: list[str] = []
        self.backbone: Backbone = build_backbone(cfg.model.backbone, cfg.model.weights, cfg.model.zero_init_residual)

    # ----------------------------------------------------------------- teachers
    def add_teacher(self, *students: str) -> None:
        """Create frozen momentum copies ``<name>_k`` of the named student modules."""
        for name in students:
            setattr(self, f"{name}_k", make_teacher(getattr(self, name)))
            self._teachers.append(name)

    @property
    def has_teacher(self) -> bool:
        return bool(self._teachers)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """Teacher momentum for a step: constant (MoCo) or cosine from m0 to 1 (PixPro/BYOL)."""
        if self.momentum_schedule == "constant":
            return self.base_momentum
        return cosine_momentum(self.base_momentum, step, total_steps)

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """EMA of every student into its teacher; called at the start of each step, before keys are computed."""
        for name in self._teachers:
            ema_update_(getattr(self, f"{name}_k"), getattr(self, name), momentum)

    # ----------------------------------------------------------------- exports
    @staticmethod
    def extra_weights(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """Weight files besides ``backbone.safetensors`` (file name -> tensors) taken from this method's state dict,
        written into the run directory at the end of training and by ``pixelssl export`` (none by default)."""
        return {}

    # ----------------------------------------------------------------- geometry of the batch
    @staticmethod
    def views(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return batch["view1"], batch["view2"]

    @staticmethod
    def geometry(batch: dict[str, Tensor], view: int) -> tuple[Tensor, Tensor]:
        """Boxes (B, 4) and flip flags (B,) of view 1 or 2."""
        return batch[f"box{view}"], batch[f"flip{view}"]

    @staticmethod
    def coordinate_positives(batch: dict[str, Tensor], shape: tuple[int, int], threshold: float) -> Tensor:
        """(B, N1, N2) positives between the two views' (H, W) maps by centre distance; transpose for 2 -> 1."""
        return coordinate_positives(batch["box1"], batch["flip1"], shape, batch["box2"], batch["flip2"], shape,
                                    threshold)

    @staticmethod
    def intersection_cells(batch: dict[str, Tensor], shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Cells of view 1 inside view 2's box, and of view 2 inside view 1's box: two (B, N) masks."""
        in1 = cells_in_other_view(batch["box1"], batch["flip1"], shape, batch["box2"])
        in2 = cells_in_other_view(batch["box2"], batch["flip2"], shape, batch["box1"])
        return in1, in2


def shuffled_forward(module: nn.Module, x: Tensor, groups: int) -> Tensor:
    """Run ``module`` on a shuffled batch split into ``groups`` BatchNorm groups and restore the order
    (MoCo's shuffling BN on one device: keys do not share batch statistics with their queries)."""
    if groups <= 1:
        return module(x)
    order = torch.randperm(x.shape[0], device=x.device)
    out = torch.cat([module(chunk) for chunk in x[order].chunk(groups)])
    return out[torch.argsort(order)]
