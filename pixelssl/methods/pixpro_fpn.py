"""PixPro on every level of an FPN (PixPro paper sec. 4.4: pre-training FPN and detection head with the pixel-level
task), so FCOS starts fine-tuning with a pre-trained FPN (and head towers) instead of random ones.

views -> backbone C3, C4, C5 -> FPN (torchvision FCOS's: P3-P5 from the laterals, P6/P7 from P5)
      -> optional FCOS-style head tower (``method.fpn_head_convs`` x conv3x3-GN-ReLU, shared by the levels)
      -> one projector + PPM shared by the levels -> PixPro consistency per level, same view geometry at each
loss = mean over the levels of PixPro's loss (each level's positives in its own cell-diagonal units, so the 0.7
threshold covers the same neighbourhood of cells at every level; in image units it halves with each finer level).

The FPN is built exactly as ``torchvision.models.detection.fcos_resnet50_fpn`` builds it, so ``fpn.safetensors``
(written at the end of training and by ``pixelssl export``) loads into ``model.backbone.fpn`` of FCOS with
``strict=True`` (levels p3-p7; with p3-p5 the ``extra_blocks.*`` keys are absent). With head convs,
``fcos_head.safetensors`` holds the pre-trained tower under both of FCOS's tower names
(``classification_head.conv.*`` and ``regression_head.conv.*``): ``model.head.load_state_dict(sd, strict=False)``
then reports missing only the prediction layers (``cls_logits``, ``bbox_reg``, ``bbox_ctrness``) and any tower
convs beyond ``fpn_head_convs``. Both files are for a ResNet-50 (FCOS R50-FPN) only when the backbone is one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from pixelssl.config import opt
from pixelssl.methods.pixpro import PixPro, PixProConfig
from pixelssl.methods.registry import register_method

FPN_CHANNELS = 256  # torchvision's detection FPNs and FCOS head
FPN_FILE, HEAD_FILE = "fpn.safetensors", "fcos_head.safetensors"
_FCOS_TOWERS = ("classification_head.conv", "regression_head.conv")


@dataclass
class PixProFPNConfig(PixProConfig):
    """PixPro on every level of torchvision FCOS's FPN (and, optionally, FCOS head convs)."""

    fpn_levels: str = opt("p3-p7", "FPN levels the loss is applied to: p3-p7 (FCOS's FPN, P6/P7 included) | p3-p5 "
                                   "(no P6/P7 convs)", choices=("p3-p7", "p3-p5"))
    fpn_head_convs: int = opt(0, "FCOS head convs (3x3 conv-GN-ReLU, 0-4) shared by all levels between the FPN and "
                                 "the projector, pre-trained for FCOS's head towers", ge=0, le=4)


def fcos_fpn(backbone_channels: dict[str, int], extra_levels: bool) -> FeaturePyramidNetwork:
    """torchvision FCOS's FPN over C3-C5 (``_resnet_fpn_extractor(returned_layers=[2, 3, 4],
    extra_blocks=LastLevelP6P7(256, 256))``): same modules, hence the same state-dict names."""
    in_channels = [backbone_channels[level] for level in ("c3", "c4", "c5")]
    extra = LastLevelP6P7(FPN_CHANNELS, FPN_CHANNELS) if extra_levels else None
    return FeaturePyramidNetwork(in_channels, FPN_CHANNELS, extra_blocks=extra)


def fcos_head_tower(convs: int) -> nn.Sequential:
    """FCOS's head tower (``FCOSClassificationHead.conv``): conv3x3 -> GroupNorm(32) -> ReLU, initialised as FCOS."""
    layers: list[nn.Module] = []
    for _ in range(convs):
        conv = nn.Conv2d(FPN_CHANNELS, FPN_CHANNELS, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(conv.bias, 0)
        layers += [conv, nn.GroupNorm(32, FPN_CHANNELS), nn.ReLU()]
    return nn.Sequential(*layers)


def _sub_state(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


@register_method("pixpro_fpn", PixProFPNConfig)
class PixProFPN(PixPro):
    """PixPro on FCOS's FPN over C3-C5 of a pixelssl ``Backbone`` (``forward_levels`` and ``channels``, e.g.
    ``build_backbone("resnet50")``): ``PixProFPN(backbone, fpn_levels="p3-p7", fpn_head_convs=0, **pixpro)``."""

    def __init__(self, backbone: nn.Module, *, fpn_levels: str = "p3-p7", fpn_head_convs: int = 0,
                 **pixpro: Any) -> None:
        if not (hasattr(backbone, "forward_levels") and isinstance(getattr(backbone, "channels", None), dict)):
            raise TypeError(f"PixProFPN needs a backbone with forward_levels() and channels (C3-C5), as "
                            f"pixelssl.models.backbones.build_backbone gives; not {type(backbone).__name__}")
        super().__init__(backbone, fpn_levels=fpn_levels, fpn_head_convs=fpn_head_convs, **pixpro)

    def build_neck(self) -> None:
        extra = self.settings.fpn_levels == "p3-p7"
        self.level_names = ("p3", "p4", "p5", "p6", "p7") if extra else ("p3", "p4", "p5")
        self.fpn = fcos_fpn(self.backbone.channels, extra)
        self.neck_modules = ("fpn",)
        if self.settings.fpn_head_convs > 0:
            self.head_tower = fcos_head_tower(self.settings.fpn_head_convs)
            self.neck_modules = ("fpn", "head_tower")

    @property
    def dense_channels(self) -> int:
        return FPN_CHANNELS

    def encode(self, view: Tensor, teacher: bool = False) -> tuple[list[Tensor], Tensor]:
        suffix = "_k" if teacher else ""
        feats = getattr(self, "backbone" + suffix).forward_levels(view, ("c3", "c4", "c5"))
        pyramid = getattr(self, "fpn" + suffix)(OrderedDict((name, feats[name]) for name in ("c3", "c4", "c5")))
        maps = list(pyramid.values())  # P3, P4, P5 (, P6, P7)
        if "head_tower" in self.neck_modules:
            tower = getattr(self, "head_tower" + suffix)
            maps = [tower(m) for m in maps]
        return maps, feats["c5"]

    @staticmethod
    def extra_weights(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """``fpn.safetensors`` (FCOS ``backbone.fpn`` names) and, with head convs, ``fcos_head.safetensors``
        (FCOS ``head`` names), from the method's state dict (online weights, not the teacher's)."""
        files = {FPN_FILE: _sub_state(state, "fpn.")}
        tower = _sub_state(state, "head_tower.")
        if tower:
            # The same tower under both names; copies, since safetensors refuses tensors that share memory.
            files[HEAD_FILE] = {f"{name}.{k}": v.clone() for name in _FCOS_TOWERS for k, v in tower.items()}
        return files
