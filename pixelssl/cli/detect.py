"""``pixelssl finetune-det``: fine-tune a torchvision detector from a backbone on COCO-format data; ``eval.json``.

Data: ``--data ROOT`` reads ``ROOT/train.json``, ``ROOT/val.json`` and the images under ``ROOT/images/`` (the
layout ``pixelssl data export-coco`` writes); ``--train-json`` / ``--val-json`` / ``--images`` override each part
(e.g. COCO's own ``annotations/instances_train2017.json`` with ``--images train2017``; then train and val images
must share one folder). ``--train-fraction F`` trains on the seeded semi-supervised subset, written next to
``eval.json`` as ``train_subset.json``.
"""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path
from typing import Any

from pixelssl import __version__
from pixelssl.cli.evaluate import output_dir, write_eval_json
from pixelssl.config import load_config, to_dict
from pixelssl.engine.distributed import process_group
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.source import resolve_backbone, run_directory
from pixelssl.export.importers import IMPORT_FORMATS
from pixelssl.io import sha256_file

log = logging.getLogger(__name__)

KIND = "finetune-det"


def coco_paths(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(train json, val json, image folder) from ``--data`` and the explicit overrides."""
    root = Path(args.data).expanduser() if args.data else None
    if root is not None and not root.is_dir():
        raise PixelSSLError(f"--data {root} is not a folder (expected train.json, val.json and images/)")
    paths = []
    for given, flag, default in ((args.train_json, "--train-json", "train.json"),
                                 (args.val_json, "--val-json", "val.json"), (args.images, "--images", "images")):
        if given:
            paths.append(Path(given).expanduser())
        elif root is not None:
            paths.append(root / default)
        else:
            raise PixelSSLError(f"give --data ROOT or {flag}")
    return paths[0], paths[1], paths[2]


def _fpn_state(args: argparse.Namespace, fpn_init: bool) -> tuple[Any, dict[str, Any] | None]:
    """The pre-trained FPN to load (``--fpn FILE``, else ``<run>/fpn.safetensors``) and its description."""
    from pixelssl.evaluate.detection_models import FPN_FILE, read_fpn_state

    if not fpn_init:
        return None, None
    if args.fpn:
        path = Path(args.fpn).expanduser()
        if not path.is_file():
            raise PixelSSLError(f"--fpn {path} does not exist")
    else:
        run = run_directory(args.backbone)
        path = run / FPN_FILE if run is not None else None
        if path is None or not path.is_file():
            return None, None
    return read_fpn_state(path), {"path": str(path.resolve()), "sha256": sha256_file(path)}


def _finetune_det(args: argparse.Namespace) -> int:
    from pixelssl.data.coco import CocoDetection, write_coco_subset
    from pixelssl.evaluate.detection import DetectionConfig, finetune_detection

    overrides = list(args.overrides)
    for flag, key in (("model", "model"), ("norm", "norm"), ("steps", "steps")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    if args.no_fpn_init:
        overrides.append("fpn_init=false")
    cfg = load_config(DetectionConfig, args.config, overrides)
    if not 0 < args.train_fraction <= 1:
        raise PixelSSLError(f"--train-fraction must be in (0, 1] (got {args.train_fraction})")
    train_json, val_json, images = coco_paths(args)
    backbone, source = resolve_backbone(args.backbone, args.arch, seed=cfg.seed, from_format=args.from_format)
    fpn_state, fpn_source = _fpn_state(args, cfg.fpn_init)
    out = output_dir(args, KIND)
    data: dict[str, Any] = {"train": str(train_json.resolve()), "val": str(val_json.resolve()),
                            "images": str(images.resolve()), "train_fraction": args.train_fraction}
    if args.train_fraction < 1:
        subset_json = out / "train_subset.json"
        data["subset"] = write_coco_subset(train_json, subset_json, args.train_fraction, args.subset_seed)
        train_json = subset_json
    masks = cfg.model == "mask_rcnn"
    train_ds = CocoDetection(train_json, images, masks=masks)
    val_ds = CocoDetection(val_json, images, masks=masks)
    log.info("%s %s from %s (%s) on %s: %d train / %d val images", KIND, cfg.model, args.backbone, source["arch"],
             train_json, len(train_ds), len(val_ds))
    with process_group(cfg.device, "device") as ctx:  # under torchrun every process trains, rank 0 writes
        metrics = finetune_detection(backbone, train_ds, val_ds, cfg, fpn_state=fpn_state,
                                     fpn_source=fpn_source["path"] if fpn_source else "",
                                     checkpoint=out / "model.safetensors")
    if not ctx.is_main:
        return 0
    record = {"kind": KIND, "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "pixelssl_version": __version__, "backbone": {**source, "fpn": fpn_source if cfg.fpn_init else None},
              "data": {**data, "num_train": len(train_ds), "num_val": len(val_ds),
                       "num_classes": train_ds.num_classes, "processes": ctx.world_size},
              "config": to_dict(cfg), "metrics": metrics}
    path = write_eval_json(out, record)
    _print_summary(metrics, path)
    return 0


def _print_summary(metrics: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{KIND}: COCO metrics")
    table.add_column("task")
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        table.add_column(name, justify="right")
    for task in ("bbox", "segm"):
        if task in metrics:
            table.add_row(task, *("-" if metrics[task][n] is None else f"{100 * metrics[task][n]:.1f}"
                                  for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")))
    console = Console()
    console.print(table)
    console.print(f"wrote {path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune-det`` to the ``pixelssl`` CLI."""
    p = subparsers.add_parser("finetune-det", help="fine-tune FCOS / Faster R-CNN / Mask R-CNN on COCO-format data "
                                                   "(box / mask AP)",
                              description="Fine-tune a torchvision detector (R-FPN) from the backbone on COCO-format "
                                          "data; writes eval.json (COCO AP via pycocotools) and model.safetensors.")
    p.add_argument("--backbone", required=True, metavar="RUN_OR_FILE",
                   help="run directory, weights file (.safetensors/.pt), 'random' or 'torchvision[:PATH]'")
    p.add_argument("--from", dest="from_format", choices=IMPORT_FORMATS, metavar="FORMAT",
                   help=f"--backbone is a released checkpoint of this kind ({', '.join(IMPORT_FORMATS)}), converted "
                        "in memory as by 'pixelssl import'")
    p.add_argument("--arch", help="architecture for random / torchvision / weights files (default: resnet50 for "
                                  "controls, inferred from the file otherwise)")
    p.add_argument("--data", metavar="ROOT", help="COCO folder with train.json, val.json and images/")
    p.add_argument("--train-json", metavar="FILE", help="training annotations (default: ROOT/train.json)")
    p.add_argument("--val-json", metavar="FILE", help="validation annotations (default: ROOT/val.json)")
    p.add_argument("--images", metavar="DIR", help="image folder that file_name is relative to (default: ROOT/images)")
    p.add_argument("--model", choices=("fcos", "faster_rcnn", "mask_rcnn"), help="detector (default: the config's, fcos)")
    p.add_argument("--norm", choices=("frozen", "sync", "bn"), help="backbone norm layers (default: frozen)")
    p.add_argument("--steps", type=int, help="optimiser steps (= steps=N)")
    p.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                   help="train on a seeded fraction of the training images (semi-supervised subsets, e.g. 0.01)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the --train-fraction subset (default 0)")
    p.add_argument("--fpn", metavar="FILE", help="pre-trained FPN state (default: RUN/fpn.safetensors when present)")
    p.add_argument("--no-fpn-init", action="store_true", help="do not load a pre-trained FPN (= fpn_init=false)")
    p.add_argument("--out", metavar="DIR", help="where eval.json goes (default: RUN/eval/finetune-det/ for a run "
                                                "directory, else ./eval_finetune-det/)")
    p.add_argument("--config", metavar="PRESET", help="YAML preset (name in pixelssl/configs or a path)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. min_size=160 max_size=160 batch_size=4 lr=0.01")
    p.set_defaults(func=_finetune_det)
