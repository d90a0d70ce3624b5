"""The ``pixelssl`` console script (``main``) and its subcommands: one module per task, each a thin layer over the
API below it (``train``: pretrain / demo / info / config, ``evaluate``: probe / finetune-seg / probe-cls,
``detect``: finetune-det, ``export``, ``inpaint``, ``report``, ``data``), and the demo (``demo``).

May import every layer of the package; nothing in the package imports ``cli`` (``__main__`` aside).
"""

from pixelssl.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
