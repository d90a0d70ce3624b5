"""pixelssl: dense (pixel-level) self-supervised pre-training of vision backbones."""

__version__ = "0.1.0"
