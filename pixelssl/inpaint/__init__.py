"""Contextual-attention inpainting (DeepFill v1): networks, training, filling one image or a folder, a web page.

The fill API is re-exported here and imported on first use, so importing ``pixelssl.inpaint`` (as the CLI does for
its subcommands) stays cheap::

    from pixelssl.inpaint import fill_folder, fill_image, load_generator

Modules: ``contextual_attention`` (the layer) with ``tf_geometry`` (TF1's nearest resize, 'SAME' padding),
``score_fusion`` (the release's fusion of attention scores) and ``flow_image`` (offsets as a colour picture);
``networks``, ``losses``, ``masks``, ``metrics``, ``images``, ``config``, ``train``; ``fill`` (one image or a folder)
with ``generator_file`` (reading a generator's weights) and ``hole_regions`` (strategy crop's crops); ``evaluate``,
``serve``; ``release_weights`` (the authors' TensorFlow weights) with ``tf_checkpoint`` (the tensor bundle),
``tf_index_format`` (its index: LevelDB table, protobuf wire format) and ``crc32c``.

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
