"""Backbones, projection heads, momentum (teacher) encoders and negative queues.

May import: ``losses``, ``config``, ``dist`` (the queue gathers every process's keys), ``io`` (weights files),
``errors``; not its siblings ``data`` / ``dense``, nor anything above.
"""

from pixelssl.models.backbones import Backbone, build_backbone, load_backbone_weights, save_backbone
from pixelssl.models.heads import MLP, ConvMLP
from pixelssl.models.momentum import cosine_momentum, ema_update_, make_teacher
from pixelssl.models.queue import FeatureQueue

__all__ = [
    "MLP",
    "Backbone",
    "ConvMLP",
    "FeatureQueue",
    "build_backbone",
    "cosine_momentum",
    "ema_update_",
    "load_backbone_weights",
    "make_teacher",
    "save_backbone",
]
