"""What every pre-training method shares: its settings, the two-view batch, teacher (momentum) copies, geometry
lookups."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from pixelssl.config import MethodConfig, validate
from pixelssl.dense.matching import cells_in_other_view, coordinate_positives
from pixelssl.models.backbones import build_backbone
from pixelssl.models.momentum import cosine_momentum, ema_update_, make_teacher


class Method(nn.Module):
    """A self-supervised method: ``forward(batch) -> {"loss": total, <named parts>...}``.

    Built from any ``nn.Module`` backbone that maps (B, 3, H, W) images to a (B, C, h, w) feature map, and the
    method's keyword settings, the keys of its ``settings_class`` (``PixPro(backbone, ppm_gamma=2.0)``), range-checked
    as the config keys are; or from a pre-training config, ``from_config(cfg)`` (``build_method(cfg)``). The batch
    holds both views and their geometry (``view1``, ``view2``, ``box1``, ``box2``, ``flip1``, ``flip2``; what
    ``pixelssl.TwoViews`` + ``collate_views`` give). ``backbone`` is the online encoder used for evaluation and
    export. Teachers registered with ``add_teacher("projector")`` become ``projector_k``; call
    ``momentum_update(momentum_at(step, total_steps))`` at the start of each step, before the forward pass.
    """

    method_name: str = ""
    settings_class: type[MethodConfig] = MethodConfig  # set by register_method

    def __init__(self, backbone: nn.Module, **settings: Any) -> None:
        super().__init__()
        self.settings = self.checked_settings(settings)
        self.base_momentum = float(self.settings.momentum)
        self.momentum_schedule = str(self.settings.momentum_schedule)
        self._teachers: list[str] = []
        self.backbone = backbone

    @classmethod
    def checked_settings(cls, values: dict[str, Any]) -> MethodConfig:
        """The settings object of this method from keyword values, checked against their declarations."""
        names = [f.name for f in dataclasses.fields(cls.settings_class) if f.name != "name"]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise TypeError(f"{cls.__name__} has no setting {unknown[0]!r}; its settings are {', '.join(names)}")
        settings = cls.settings_class(name=cls.method_name, **values)
        validate(settings, what=f"{cls.__name__} setting")
        return settings

    @classmethod
    def from_config(cls, cfg: Any) -> Method:
        """This method as a pre-training config describes it: the backbone ``cfg.model`` names (``build_backbone``),
        the head widths of ``cfg.model`` and the keys of ``cfg.method``, through the same constructor."""
        backbone = build_backbone(cfg.model.backbone, cfg.model.weights, cfg.model.zero_init_residual)
        settings = {key: value for key, value in cfg.method.items() if key != "name"}
        return cls(backbone, proj_hidden_dim=int(cfg.model.proj_hidden_dim), proj_dim=int(cfg.model.proj_dim),
                   **settings)

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


def feature_channels(backbone: nn.Module, feature_dim: int | None) -> int:
    """Channels of the backbone's feature map: ``feature_dim``, else the backbone's ``out_channels``."""
    if feature_dim is not None:
        return int(feature_dim)
    channels = getattr(backbone, "out_channels", None)
    if not isinstance(channels, int):
        raise ValueError(f"feature_dim: give the channels of the backbone's feature map ({type(backbone).__name__} "
                         f"has no out_channels)")
    return channels
