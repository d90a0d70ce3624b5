"""``pixelssl export RUN_OR_FILE --to torchvision|timm|detectron2|safetensors [--from FORMAT] [--out PATH]`` and
``pixelssl import FILE --from pixpro|densecl|pixcon|moco|detectron2|torchvision [--encoder key] [--out PATH]``."""

from __future__ import annotations

import argparse

from pixelssl.export.exporters import FORMATS
from pixelssl.export.importers import ENCODERS, IMPORT_FORMATS

FROM_HELP = ("read a released checkpoint of this kind, converted in memory as by 'pixelssl import' (online "
             "encoder): " + ", ".join(IMPORT_FORMATS))


def _export(args: argparse.Namespace) -> int:
    from pixelssl.export.exporters import export

    for path in export(args.source, args.to, args.out, from_format=args.from_format):
        print(path)
    return 0


def _import(args: argparse.Namespace) -> int:
    from pixelssl.export.importers import import_checkpoint, write_imported

    imported = import_checkpoint(args.file, args.from_format, args.encoder)
    print(imported.report(write_imported(imported, args.out)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a pre-trained backbone for torchvision, timm, detectron2 or as safetensors",
        description="Export the ResNet backbone of a run directory (newest valid checkpoint, else backbone.safetensors) "
                    "or of a weights file. A pixpro_fpn run's fpn.safetensors (torchvision FCOS names) is written "
                    "beside torchvision / safetensors exports.")
    parser.add_argument("source", help="run directory or weights file (.safetensors / .pt / .pth)")
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--from", dest="from_format", choices=IMPORT_FORMATS, metavar="FORMAT", help=FROM_HELP)
    parser.add_argument("--out", default=None,
                        help="output file (default: RUN/export/<arch>_<format>.<ext>, or beside a weights file)")
    parser.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import", help="convert a released PixPro/DenseCL/PixCon/MoCo/detectron2/torchvision checkpoint",
        description="Convert a released checkpoint into backbone.safetensors (torchvision ResNet names, as pixelssl "
                    "runs write it) plus <head>.safetensors for the heads that are ours layer for layer, and print "
                    "which keys were used and ignored. Nothing in the file is run: only tensors and the few plain "
                    "types each release stores are read.")
    imp.add_argument("file", help="the release's checkpoint (.pth / .pth.tar / .pkl / .safetensors)")
    imp.add_argument("--from", dest="from_format", required=True, choices=IMPORT_FORMATS, help="whose layout it has")
    imp.add_argument("--encoder", choices=ENCODERS, default="online",
                     help="online (query) encoder, as every release transfers (default), or the momentum (key) copy")
    imp.add_argument("--out", default=None, metavar="PATH",
                     help="output folder (default: <FILE without suffix>_pixelssl/ beside FILE), or the backbone's "
                          ".safetensors file with the heads beside it")
    imp.set_defaults(func=_import)
