"""DenseCL (Wang et al., "Dense Contrastive Learning for Self-Supervised Visual Pre-Training", CVPR 2021).

The positive of query pixel i is the key pixel of highest backbone-feature (C5) cosine,
``j* = argmax_j cos(b_q_i, b_k_j)``; dense InfoNCE against a queue of pooled dense keys, mean over all pixels;
total ``(1 - lambda) * L_global + lambda * L_dense``, lambda 0.5 (DenseCL paper; official release,
``openselfsup/models/densecl.py``).
The release's recipe is MoCo-v2's (presets ``densecl_r18_demo`` / ``densecl_r50``): heads without BN, no
predictor, view 1 -> view 2 only, constant momentum 0.999, shuffled BN, tau 0.2. Everything else is the shared
core, ``pixelssl.methods.dense_moco``; with the MoCo-v2+ switches on, this is PixCon-Sim.
"""

from __future__ import annotations

from dataclasses import dataclass

from pixelssl.methods.dense_moco import DenseMoCo, DenseMoCoConfig
from pixelssl.methods.registry import register_method


@dataclass
class DenseCLConfig(DenseMoCoConfig):
    """DenseCL: dense InfoNCE, positives by backbone-feature argmax, on the MoCo-v2 core (the shared core's keys)."""


@register_method("densecl", DenseCLConfig)
class DenseCL(DenseMoCo):
    """Matching by feature argmax (the core's default), every query pixel weighted 1."""
