"""``pixelssl probe`` / ``finetune-seg`` / ``probe-cls``: evaluate a backbone and write ``eval.json``.

Each command resolves the backbone (run directory, weights file, ``random`` or ``torchvision[:PATH]``), loads the
data (a folder with ``train/`` and ``val/``, ``--val PATH``, or ``synthetic``), runs the protocol with its config
(schema defaults <- ``--config`` preset <- ``key=value`` overrides; ``synthetic.*`` keys size the built-in
scenes) and writes ``eval.json`` (metrics, resolved config, backbone source) into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixelssl import __version__
from pixelssl.config import load_config, to_dict
from pixelssl.engine.distributed import launched_world_size, process_group
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.metrics import jsonable
from pixelssl.evaluate.source import resolve_backbone, run_directory
from pixelssl.evaluate.splits import SyntheticEvalSection, classification_data, segmentation_data
from pixelssl.export.importers import IMPORT_FORMATS
from pixelssl.io import atomic_write

log = logging.getLogger(__name__)


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Protocol overrides and ``synthetic.*`` overrides."""
    own = [o for o in overrides if not o.startswith("synthetic.")]
    synthetic = [o for o in overrides if o.startswith("synthetic.")]
    return own, synthetic


def output_dir(args: argparse.Namespace, kind: str) -> Path:
    """``--out``, else ``<RUN>/eval/<kind>/`` for a run directory, else ``./eval_<kind>/``."""
    if args.out:
        return Path(args.out).expanduser()
    run = run_directory(args.backbone)
    return run / "eval" / kind if run is not None else Path(f"eval_{kind}")


def write_eval_json(out: Path, record: dict[str, Any]) -> Path:
    """Write ``eval.json`` atomically (strict JSON: NaN becomes null)."""
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "eval.json", json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n")


def _print_summary(kind: str, metrics: dict[str, Any], path: Path) -> None:
    """Headline numbers and per-class scores as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if "miou" in metrics:
        table = Table(title=f"{kind}: mIoU {metrics['miou']:.4f}, pixel accuracy {metrics['pixel_acc']:.4f}")
        table.add_column("class")
        table.add_column("IoU", justify="right")
        for name, iou in zip(metrics["class_names"], metrics["per_class_iou"], strict=True):
            table.add_row(name, "-" if iou != iou else f"{iou:.4f}")
        console.print(table)
    else:
        top5 = "n/a" if metrics["top5"] is None else f"{metrics['top5']:.4f}"
        console.print(f"{kind}: top-1 {metrics['top1']:.4f}, top-5 {top5}")
    console.print(f"wrote {path}")


def _run(args: argparse.Namespace, kind: str, schema: type,
         evaluate: Callable[[Any, Any, Any, Any, Path], dict[str, Any]], dense: bool, distributed: bool = False) -> int:
    """Shared body of the three commands: config, backbone, data, protocol, eval.json. Under torchrun a
    ``distributed`` protocol (fine-tuning) trains in every process and rank 0 writes; the probes run in one."""
    own, synthetic_overrides = _split_overrides(list(args.overrides))
    if getattr(args, "head", None):
        own.append(f"head={args.head}")
    cfg = load_config(schema, args.config, own)
    synthetic = load_config(SyntheticEvalSection, None, synthetic_overrides).synthetic
    if not distributed and launched_world_size() > 1:
        raise PixelSSLError(f"{kind} runs in one process; start it without torchrun (finetune-seg and finetune-det "
                            "train distributed)")
    backbone, source = resolve_backbone(args.backbone, args.arch, seed=cfg.seed, from_format=args.from_format)
    if dense:
        train_ds, val_ds, data = segmentation_data(args.data, args.val, synthetic)
    else:
        train_ds, val_ds, data = classification_data(args.data, args.val)
    out = output_dir(args, kind)
    log.info("%s of %s (%s) on %s: %d train / %d val images", kind, args.backbone, source["arch"], args.data,
             len(train_ds), len(val_ds))
    with process_group(cfg.device, "device") as ctx:
        metrics = evaluate(backbone, train_ds, val_ds, cfg, out)
    if not ctx.is_main:
        return 0
    record = {"kind": kind, "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "pixelssl_version": __version__, "backbone": source,
              "data": {**data, "num_train": len(train_ds), "num_val": len(val_ds),
                       "num_classes": train_ds.num_classes, "processes": ctx.world_size},
              "config": to_dict(cfg), "metrics": metrics}
    _print_summary(kind, metrics, write_eval_json(out, record))
    return 0


def _probe(args: argparse.Namespace) -> int:
    from pixelssl.evaluate.probe import ProbeConfig, linear_probe

    return _run(args, "probe", ProbeConfig, lambda b, tr, va, cfg, out: linear_probe(b, tr, va, cfg), dense=True)


def _finetune(args: argparse.Namespace) -> int:
    from pixelssl.evaluate.segmentation import FinetuneConfig, finetune_segmentation

    def evaluate(backbone: Any, train_ds: Any, val_ds: Any, cfg: Any, out: Path) -> dict[str, Any]:
        return finetune_segmentation(backbone, train_ds, val_ds, cfg, checkpoint=out / "model.safetensors")

    return _run(args, "finetune-seg", FinetuneConfig, evaluate, dense=True, distributed=True)


def _probe_cls(args: argparse.Namespace) -> int:
    from pixelssl.evaluate.classification import ClsProbeConfig, linear_probe_classification

    return _run(args, "probe-cls", ClsProbeConfig,
                lambda b, tr, va, cfg, out: linear_probe_classification(b, tr, va, cfg), dense=False)


def _common_arguments(parser: argparse.ArgumentParser, data_help: str) -> None:
    parser.add_argument("--backbone", required=True, metavar="RUN_OR_FILE",
                        help="run directory, weights file (.safetensors/.pt), 'random' or 'torchvision[:PATH]'")
    parser.add_argument("--from", dest="from_format", choices=IMPORT_FORMATS, metavar="FORMAT",
                        help=f"--backbone is a released checkpoint of this kind ({', '.join(IMPORT_FORMATS)}), "
                             "converted in memory as by 'pixelssl import'")
    parser.add_argument("--data", required=True, metavar="PATH", help=data_help)
    parser.add_argument("--val", metavar="PATH", help="validation folder (default: DATA/val)")
    parser.add_argument("--arch", help="architecture for random / torchvision / weights files (default: resnet50 "
                                       "for controls, inferred from the file otherwise)")
    parser.add_argument("--out", metavar="DIR", help="where eval.json goes (default: RUN/eval/<kind>/ for a run "
                                                     "directory, else ./eval_<kind>/)")
    parser.add_argument("--config", metavar="PRESET", help="YAML preset (name in pixelssl/configs or a path)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. epochs=10 levels=[c4,c5]; synthetic.train_images=100 sizes "
                             "--data synthetic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the evaluation subcommands to the ``pixelssl`` CLI."""
    seg_data = "segmentation folder with train/ and val/ (images/ + labels/ each), or 'synthetic'"
    probe = subparsers.add_parser("probe", help="frozen linear segmentation probe (mIoU)",
                                  description="Linear probe on frozen dense features; writes eval.json.")
    _common_arguments(probe, seg_data)
    probe.set_defaults(func=_probe)

    finetune = subparsers.add_parser("finetune-seg", help="fine-tune an FCN / Semantic-FPN segmentation model (mIoU)",
                                     description="Fine-tune a segmentation model from the backbone; writes "
                                                 "eval.json and model.safetensors.")
    _common_arguments(finetune, seg_data)
    finetune.add_argument("--head", choices=("fcn", "fpn"), help="segmentation head (default: the config's, fpn)")
    finetune.set_defaults(func=_finetune)

    cls = subparsers.add_parser("probe-cls", help="linear classification probe on pooled features (top-1/top-5)",
                                description="Linear classifier on pooled frozen features; writes eval.json.")
    _common_arguments(cls, "ImageFolder-layout folder with train/ and val/ (each <class>/<image>)")
    cls.set_defaults(func=_probe_cls)
