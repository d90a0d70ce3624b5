"""torchvision detectors (FCOS, Faster R-CNN, Mask R-CNN; R-FPN) around a pixelssl ResNet backbone.

The backbone is rebuilt as a torchvision ``ResNet`` holding the pixelssl weights and wrapped in torchvision's
``BackboneWithFPN`` exactly as ``fcos_resnet50_fpn`` / ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` do
(``_resnet_fpn_extractor``), so parameter names are torchvision's (``backbone.body.layer1...``,
``backbone.fpn.inner_blocks.0.0.weight``) for any ResNet depth and any FPN width. Norm layers follow the
fine-tuning protocol of the papers: FrozenBN by default (statistics and affine of the pre-trained backbone kept),
or trainable BatchNorm / SyncBatchNorm; stages that are not trained always get FrozenBN.

An FPN pre-trained with the backbone (``<run>/fpn.safetensors``: a state dict with the key names of torchvision
FCOS's ``model.backbone.fpn``) is loaded by ``load_fpn_state``: into FCOS entirely, into Faster / Mask R-CNN level
by level (their FPN also has C2, and P6 is a max-pool there) wherever the shapes agree.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from pixelssl.errors import PixelSSLError
from pixelssl.models.backbones import Backbone, ResNetBackbone, read_state_dict

log = logging.getLogger(__name__)

MODELS = ("fcos", "faster_rcnn", "mask_rcnn")
NORMS = ("frozen", "sync", "bn")
FPN_FILE = "fpn.safetensors"
DEFAULT_FPN_CHANNELS = 256
STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")  # trained from the top, as torchvision counts them
RETURNED_LAYERS = {"fcos": [2, 3, 4], "faster_rcnn": [1, 2, 3, 4], "mask_rcnn": [1, 2, 3, 4]}


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a FrozenBatchNorm2d with the same statistics and affine."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        module.add_module(name, freeze_batchnorm(child))
    return module


def torchvision_resnet(backbone: Backbone) -> resnet.ResNet:
    """A torchvision ResNet (fc unused) carrying the weights of a pixelssl ResNet backbone."""
    if not isinstance(backbone, ResNetBackbone):
        raise PixelSSLError(f"detection fine-tuning needs a torchvision ResNet backbone (resnet18/34/50/101), "
                            f"got {getattr(backbone, 'name', type(backbone).__name__)}")
    net = getattr(resnet, backbone.name)(weights=None)
    missing, unexpected = net.load_state_dict(backbone.state_dict(), strict=False)
    if unexpected or any(not key.startswith("fc.") for key in missing):
        raise PixelSSLError(f"backbone {backbone.name} does not map onto torchvision's {backbone.name}")
    return net


def fpn_backbone(backbone: Backbone, model: str, norm: str, trainable_layers: int, fpn_channels: int
                 ) -> BackboneWithFPN:
    """``BackboneWithFPN`` over the backbone as torchvision builds it for ``model`` (FCOS: C3-C5 + P6/P7 from P5;
    R-CNN: C2-C5 + max-pooled P6); the top ``trainable_layers`` stages train, the rest are frozen."""
    net = torchvision_resnet(backbone)
    trained = list(STAGES[:trainable_layers]) + (["bn1"] if trainable_layers == 5 else [])
    for name, parameter in net.named_parameters():
        if not any(name.startswith(stage) for stage in trained):
            parameter.requires_grad_(False)
    if norm == "frozen":
        freeze_batchnorm(net)
    else:  # frozen stages must not update running statistics either
        for name in ("bn1", "layer1", "layer2", "layer3", "layer4"):
            if not any(name.startswith(stage) for stage in trained):
                setattr(net, name, freeze_batchnorm(getattr(net, name)))
    layers = RETURNED_LAYERS[model]
    in_channels = [backbone.channels[f"c{k + 1}"] for k in layers]
    extra = LastLevelP6P7(fpn_channels, fpn_channels) if model == "fcos" else None
    return BackboneWithFPN(net, {f"layer{k}": str(v) for v, k in enumerate(layers)}, in_channels, fpn_channels,
                           extra_blocks=extra)


def build_detector(backbone: Backbone, num_classes: int, cfg: Any, fpn_channels: int = DEFAULT_FPN_CHANNELS
                   ) -> nn.Module:
    """The configured torchvision detector (``cfg.model``) for ``num_classes`` classes including background."""
    if cfg.model not in MODELS:
        raise PixelSSLError(f"unknown detection model '{cfg.model}'; choose from {', '.join(MODELS)}")
    if cfg.model == "fcos" and fpn_channels % 32:
        raise PixelSSLError(f"FCOS needs an FPN width divisible by 32 (its head uses GroupNorm(32)); got {fpn_channels}")
    body = fpn_backbone(backbone, cfg.model, cfg.norm, cfg.trainable_layers, fpn_channels)
    sizes = tuple((int(s),) for s in cfg.anchor_sizes) or None
    common = {"min_size": cfg.min_size, "max_size": cfg.max_size}
    if cfg.model == "fcos":
        anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes)) if sizes else None
        return FCOS(body, num_classes, anchor_generator=anchors, score_thresh=cfg.score_thresh,
                    detections_per_img=cfg.detections_per_image, **common)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes)) if sizes else None
    kind = FasterRCNN if cfg.model == "faster_rcnn" else MaskRCNN
    return kind(body, num_classes, rpn_anchor_generator=anchors, box_score_thresh=cfg.score_thresh,
                box_detections_per_img=cfg.detections_per_image, box_batch_size_per_image=cfg.roi_batch_size,
                **common)


# --------------------------------------------------------------------------- pre-trained FPN
_LEVEL_KEY = re.compile(r"^(inner_blocks|layer_blocks)\.(\d+)\.(.+)$")


def read_fpn_state(path: str | Path) -> dict[str, Tensor]:
    """An FPN state dict in torchvision FCOS ``backbone.fpn`` key names (``backbone.fpn.`` / ``fpn.`` prefixes
    tolerated); one-line error when the file holds no FPN."""
    try:
        state = read_state_dict(path)
    except ValueError as exc:
        raise PixelSSLError(str(exc)) from exc
    for prefix in ("model.", "backbone.", "fpn."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    if "layer_blocks.0.0.weight" not in state:
        raise PixelSSLError(f"'{path}' is not an FPN state dict (no 'layer_blocks.0.0.weight')")
    return state


def fpn_state_width(state: dict[str, Tensor]) -> int:
    """Output channels of an FPN state dict."""
    return int(state["layer_blocks.0.0.weight"].shape[0])


def load_fpn_state(model: nn.Module, state: dict[str, Tensor], kind: str, where: str = "FPN state"
                   ) -> dict[str, Any]:
    """Load an FCOS-named FPN state dict into ``model.backbone.fpn``; returns what was loaded and skipped.

    FCOS takes the whole state (any missing, unexpected or differently shaped key is an error naming ``where``).
    Faster / Mask R-CNN's FPN starts at C2, so FCOS's level i (C3 + i) is their level i + 1; P6/P7 convs have
    no counterpart there. Entries whose shapes differ are skipped; R-CNN's C2 lateral keeps its random init.
    """
    fpn = model.backbone.fpn
    own = fpn.state_dict()
    if kind == "fcos":
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            detail = (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'" if unexpected
                      else f"'{wrong[0]}' has shape {tuple(state[wrong[0]].shape)}, the detector's FPN "
                           f"{tuple(own[wrong[0]].shape)}")
            raise PixelSSLError(f"{where} does not fit the FCOS FPN of this backbone ({detail}); "
                                f"pass --no-fpn-init (fpn_init=false) to train the FPN from scratch")
        fpn.load_state_dict(state)
        return {"loaded": sorted(state), "skipped": []}
    mapped: dict[str, Tensor] = {}
    skipped = []
    for key, value in state.items():
        match = _LEVEL_KEY.match(key)
        target = f"{match[1]}.{int(match[2]) + 1}.{match[3]}" if match else None
        if target in own and tuple(own[target].shape) == tuple(value.shape):
            mapped[target] = value
        else:
            skipped.append(key)
    if not mapped:
        raise PixelSSLError(f"{where}: no FPN entry fits the {kind} FPN of this backbone; pass --no-fpn-init")
    fpn.load_state_dict({**own, **mapped})
    return {"loaded": sorted(mapped), "skipped": sorted(skipped)}
