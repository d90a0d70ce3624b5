"""Pre-training methods, one file each, built by name through ``registry``; importing this package registers them
all.

May import: ``data``, ``dense``, ``models``, ``losses``, ``config``, ``dist``, ``io``, ``errors``. Known debt
(an ``ignore_imports`` entry in pyproject.toml): ``config`` imports ``methods.registry`` back, to ask whether a
method needs a queue; it goes when each method holds its own config section.
"""

from pixelssl.methods import densecl, moco, pixcon, pixcontrast, pixpro, pixpro_fpn  # noqa: F401  (registration side effects)
from pixelssl.methods.base import Method
from pixelssl.methods.registry import available_methods, build_method, register_method

__all__ = ["Method", "available_methods", "build_method", "register_method"]
