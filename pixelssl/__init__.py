"""pixelssl: dense (pixel-level) self-supervised pre-training of vision backbones.

The bottom of the package lives here: ``errors`` (what the CLI prints as one line), ``dist`` (collectives over a
process group) and ``io`` (files written whole or not at all, weights files), then ``config`` (schemas, presets,
overrides). The packages above them are layered as docs/design.md draws it; ``make layers`` (part of
``make test``) checks every import against the contract in pyproject.toml.

Importing ``pixelssl`` imports ``pixelssl.methods``, which registers each method's settings as a schema of the
config's ``method`` section.
"""

__version__ = "0.1.0"

from pixelssl import methods as _methods  # noqa: E402, F401  (registers every method and its config section)
