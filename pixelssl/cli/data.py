"""``pixelssl data export-coco`` / ``coco-subset``: write the synthetic scenes as COCO, take seeded subsets."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _export_coco(args: argparse.Namespace) -> int:
    from pixelssl.data.synthetic_coco import export_synthetic_coco
    from pixelssl.errors import PixelSSLError

    val = args.images // 4 if args.val_images is None else args.val_images
    if args.images < 1 or val < 0:
        raise PixelSSLError(f"--images must be >= 1 and --val-images >= 0 (got {args.images}, {val})")
    if args.size < 16 or not 1 <= args.num_classes <= 12:
        raise PixelSSLError(f"--size must be >= 16 and --num-classes in 1..12 (got {args.size}, {args.num_classes})")
    written = export_synthetic_coco(args.out, args.images, val, size=args.size, num_classes=args.num_classes,
                                    seed=args.seed, min_area=args.min_area)
    for split, path in written.items():
        print(f"wrote {split}: {path}")
    return 0


def _coco_subset(args: argparse.Namespace) -> int:
    from pixelssl.data.coco import write_coco_subset

    summary = write_coco_subset(args.json, args.out, args.fraction, args.seed)
    print(f"wrote {args.out}: {summary['num_images']} of {summary['of_images']} images, "
          f"{summary['num_annotations']} annotations (fraction {args.fraction}, seed {args.seed})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pixelssl data ...`` to the CLI."""
    parser = subparsers.add_parser("data", help="dataset tools: synthetic COCO export, semi-supervised subsets")
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = commands.add_parser("export-coco", help="write the synthetic scenes as a COCO detection / instance dataset",
                            description="Writes OUT/images/*.png, OUT/train.json and OUT/val.json (visible instance "
                                        "masks as RLE, their boxes and areas), the layout finetune-det --data reads.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--images", type=int, required=True, metavar="N", help="training scenes")
    p.add_argument("--val-images", type=int, metavar="M", help="validation scenes (default N // 4; 0 = none)")
    p.add_argument("--size", type=int, default=128, help="scene side in pixels (default 128)")
    p.add_argument("--num-classes", type=int, default=6, help="object classes, 1..12 (default 6)")
    p.add_argument("--seed", type=int, default=0, help="scene generator seed (default 0)")
    p.add_argument("--min-area", type=int, default=16, help="visible pixels an instance needs to be annotated")
    p.set_defaults(func=_export_coco)

    p = commands.add_parser("coco-subset", help="seeded fraction of a COCO training set (semi-supervised splits)",
                            description="Image-level sampling by one seeded permutation: the same seed gives the same "
                                        "subset, and a smaller fraction is contained in a larger one.")
    p.add_argument("json", metavar="COCO_JSON", help="source annotation file")
    p.add_argument("--fraction", type=float, required=True, help="fraction of the images to keep, e.g. 0.01 or 0.1")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the subset json")
    p.set_defaults(func=_coco_subset)
