"""Pre-training methods; importing this package registers them all."""

from pixelssl.methods import densecl, moco, pixcon, pixcontrast, pixpro, pixpro_fpn  # noqa: F401  (registration side effects)
from pixelssl.methods.base import Method
from pixelssl.methods.registry import available_methods, build_method, register_method

__all__ = ["Method", "available_methods", "build_method", "register_method"]
