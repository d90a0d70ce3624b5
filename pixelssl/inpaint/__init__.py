"""Contextual-attention inpainting (DeepFill v1): networks, training, filling one image or a folder, a web page.

The fill API is re-exported here and imported on first use, so importing ``pixelssl.inpaint`` (as the CLI does for
its subcommands) stays cheap::

    from pixelssl.inpaint import fill_folder, fill_image, load_generator

May import: ``evaluate`` and everything below (today: ``engine``'s run machinery, ``data``, ``dense.propagation``
for contextual attention, ``config``, ``io``, ``errors``); not its siblings ``report`` / ``train``, nor ``cli``.
"""

from __future__ import annotations

from typing import Any

_FILL_API = ("FolderFillResult", "fill_folder", "fill_image", "fill_images", "load_generator", "save_png")
__all__ = list(_FILL_API)


def __getattr__(name: str) -> Any:
    """Lazy re-export of ``pixelssl.inpaint.fill``'s API (PEP 562)."""
    if name in _FILL_API:
        from pixelssl.inpaint import fill

        return getattr(fill, name)
    raise AttributeError(f"module 'pixelssl.inpaint' has no attribute {name!r}")
