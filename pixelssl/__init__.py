"""pixelssl: dense (pixel-level) self-supervised pre-training of vision backbones.

The bottom of the package lives here: ``errors`` (what the CLI prints as one line), ``dist`` (collectives over a
process group) and ``io`` (files written whole or not at all, weights files), then ``config`` (schemas, presets,
overrides). The packages above them are layered as docs/design.md draws it; ``make layers`` (part of
``make test``) checks every import against the contract in pyproject.toml.

The building blocks, for one's own training loop (docs/api.md): the methods, each an ``nn.Module`` built from a
backbone that returns a feature map and its own keyword settings (``PixPro(backbone, feature_dim=2048)``;
``build_method(cfg)`` builds one from a pre-training config); ``TwoViews``, an image -> both views with their
geometry, and ``collate_views``, their batch; the losses as modules; ``build_backbone``. Importing ``pixelssl``
imports ``pixelssl.methods``, which registers each method's settings as a schema of the config's ``method`` section.
"""

__version__ = "0.1.0"

from pixelssl.data.views import TwoViews, collate_views  # noqa: E402
from pixelssl.losses import DenseInfoNCE, InfoNCE, NegativeCosine, PixelInfoNCE, PixProConsistency  # noqa: E402
from pixelssl.methods import (  # noqa: E402
    DenseCL,
    Method,
    MoCo,
    PixConCoord,
    PixConSim,
    PixConSR,
    PixContrast,
    PixPro,
    PixProFPN,
    build_method,
)
from pixelssl.models.backbones import build_backbone  # noqa: E402

__all__ = [
    "DenseCL", "DenseInfoNCE", "InfoNCE", "Method", "MoCo", "NegativeCosine", "PixConCoord", "PixConSR", "PixConSim",
    "PixContrast", "PixPro", "PixProConsistency", "PixProFPN", "PixelInfoNCE", "TwoViews", "build_backbone",
    "build_method", "collate_views",
]
