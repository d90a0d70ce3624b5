"""Pre-training methods, one file each, built by name through ``registry``; importing this package registers them
all.

Each method file declares its settings (a ``config.MethodConfig`` subclass: keys, defaults, bounds, cross-key
``problems()``) next to the method and registers both by name (``register_method("pixpro", PixProConfig)``); the
config's ``method`` section takes that schema when ``method.name`` names the method.

May import: ``data``, ``dense``, ``models``, ``losses``, ``config``, ``dist``, ``io``, ``errors``.
"""

from pixelssl.methods.base import Method
from pixelssl.methods.densecl import DenseCL
from pixelssl.methods.moco import MoCo
from pixelssl.methods.pixcon import PixConCoord, PixConSim, PixConSR
from pixelssl.methods.pixcontrast import PixContrast
from pixelssl.methods.pixpro import PixPro
from pixelssl.methods.pixpro_fpn import PixProFPN
from pixelssl.methods.registry import available_methods, build_method, register_method

__all__ = ["DenseCL", "Method", "MoCo", "PixConCoord", "PixConSR", "PixConSim", "PixContrast", "PixPro", "PixProFPN",
           "available_methods", "build_method", "register_method"]
