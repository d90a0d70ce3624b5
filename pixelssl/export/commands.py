"""``pixelssl export RUN_OR_FILE --to torchvision|timm|detectron2|safetensors [--out PATH]``."""

from __future__ import annotations

import argparse

from pixelssl.export.exporters import FORMATS


def _export(args: argparse.Namespace) -> int:
    from pixelssl.export.exporters import export

    for path in export(args.source, args.to, args.out):
        print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a pre-trained backbone for torchvision, timm, detectron2 or as safetensors",
        description="Export the ResNet backbone of a run directory (newest valid checkpoint, else backbone.safetensors) "
                    "or of a weights file. A pixpro_fpn run's fpn.safetensors (torchvision FCOS names) is written "
                    "beside torchvision / safetensors exports.")
    parser.add_argument("source", help="run directory or weights file (.safetensors / .pt / .pth)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--out", default=None,
                        help="output file (default: RUN/export/<arch>_<format>.<ext>, or beside a weights file)")
    parser.set_defaults(func=_export)
