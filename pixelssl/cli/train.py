"""CLI subcommands for pre-training: ``pretrain``, ``demo``, ``info``, ``config``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pixelssl.config import PretrainConfig, available_presets, describe, load_config, to_yaml
from pixelssl.errors import PixelSSLError


def _pretrain(args: argparse.Namespace) -> int:
    from pixelssl.report.figures import TensorBoardFigures  # train.figure_every's drawer
    from pixelssl.train.loop import pretrain

    figures = TensorBoardFigures()
    if args.resume == "auto":  # re-runnable command line (SLURM requeue): resume the named run if it has started
        cfg = load_config(PretrainConfig, args.config, args.overrides)
        if not cfg.run.name:
            raise PixelSSLError("--resume auto needs a fixed run.name (e.g. run.name=my_run) to find the run again")
        run_dir = Path(cfg.run.output_dir) / cfg.run.name
        started = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("*.pt"))
        result = pretrain(resume=run_dir, overrides=args.overrides, figures=figures) if started else \
            pretrain(cfg, figures=figures)
    elif args.resume:
        if args.config:
            raise PixelSSLError("--resume continues a run with its saved config; do not pass --config with it")
        result = pretrain(resume=args.resume, overrides=args.overrides, figures=figures)
    else:
        result = pretrain(load_config(PretrainConfig, args.config, args.overrides), figures=figures)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    print(f"run: {result.run_dir}")
    if result.first_loss != result.first_loss:  # NaN: no step ran, the run had already reached its last step
        print(f"already finished: all {result.steps} steps were done before; nothing left to train")
    else:
        print(f"loss: {result.first_loss:.4f} (first step) -> {result.final_loss:.4f} (last step), "
              f"{result.steps} steps, {result.images_per_second:.1f} img/s")
    print(f"backbone: {result.backbone_path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pixelssl.cli.demo import ALL_METHODS, METHODS, run_demo

    if args.methods == "default":
        methods = METHODS
    elif args.methods == "all":
        methods = ALL_METHODS
    else:
        by_preset = {preset.replace("_r18_demo", ""): (label, preset) for label, preset in ALL_METHODS}
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in by_preset]
        if unknown or not wanted:
            raise PixelSSLError(f"demo --methods: unknown {', '.join(unknown) or '(empty)'}; choose 'default', 'all' "
                                f"or a comma list of {', '.join(by_preset)}")
        methods = tuple(by_preset[m] for m in wanted)
    run_demo(output_dir=args.output_dir, quick=args.quick, methods=methods, steps=args.steps)
    return 0


def _info(args: argparse.Namespace) -> int:
    from pixelssl.engine.logger import read_metrics

    run = Path(args.run)
    config_path = run / "config.yaml"
    if not config_path.is_file():
        raise PixelSSLError(f"'{run}' is not a run directory (no config.yaml)")
    cfg = load_config(PretrainConfig, str(config_path))
    print(f"run:      {run}")
    print(f"method:   {cfg.method.name}   backbone: {cfg.model.backbone}")
    print(f"data:     {cfg.data.root or 'synthetic scenes'} at {cfg.data.image_size}px, batch {cfg.train.batch_size}")
    records = read_metrics(run / "metrics.jsonl")
    if records:
        monitors = [r for r in records if any(k.startswith("monitor/") for k in r)]  # train.monitor_every records
        for title, found in (("last:    ", [r for r in records if r not in monitors]), ("monitor: ", monitors)):
            if found:
                shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in found[-1].items())
                print(f"{title} {shown}")
    else:
        print("last:     no metrics yet")
    ckpt = run / "checkpoints" / "last.pt"
    print(f"resume:   {'pixelssl pretrain --resume ' + str(run) if ckpt.exists() else 'no checkpoint'}")
    backbone = run / "backbone.safetensors"
    print(f"backbone: {backbone if backbone.exists() else 'not exported yet (run unfinished)'}")
    for evaluation in sorted(run.glob("eval/*/eval.json")):
        metrics = json.loads(evaluation.read_text()).get("metrics", {})
        summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        print(f"eval:     {evaluation.parent.name}: {summary}")
    if args.config:
        print(to_yaml(cfg))
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.keys:
        print(describe(PretrainConfig))
        return 0
    if args.list:
        print("\n".join(available_presets()))
        return 0
    print(to_yaml(load_config(PretrainConfig, args.config, args.overrides)), end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrain", help="self-supervised pre-training",
                              description="Pre-train a backbone. Overrides are dotted keys, e.g. train.epochs=5.")
    p.add_argument("--config", help="preset name (see `pixelssl config --list`) or YAML file")
    p.add_argument("--resume", metavar="RUN", help="continue a run directory (or checkpoint file) exactly; 'auto' "
                   "(with --config and run.name): resume that run if it has a checkpoint, else start it")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    p.set_defaults(func=_pretrain)

    p = subparsers.add_parser("demo", help="pre-train on built-in synthetic scenes and compare methods by probing")
    p.add_argument("--output-dir", default="runs/demo", help="where the demo runs are written")
    p.add_argument("--quick", action="store_true", help="a much shorter budget (smoke test, numbers meaningless)")
    p.add_argument("--methods", default="default",
                   help="'default' (MoCo-v2, PixContrast, PixPro), 'all' (+ DenseCL, PixCon) or a comma list")
    p.add_argument("--steps", type=int, default=None, help="pre-training steps per method (default: the budget's)")
    p.set_defaults(func=_demo)

    p = subparsers.add_parser("info", help="summarise a run: config, last metrics, evaluations")
    p.add_argument("run", help="run directory")
    p.add_argument("--config", action="store_true", help="also print the full resolved config")
    p.set_defaults(func=_info)

    p = subparsers.add_parser("config", help="print a resolved config, the presets, or every key with its help")
    p.add_argument("--config", help="preset name or YAML file to start from")
    p.add_argument("--keys", action="store_true", help="list every key with its default and description")
    p.add_argument("--list", action="store_true", help="list the shipped presets")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=_config)
