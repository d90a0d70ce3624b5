"""Dense transfer benchmark: each method pre-trained on a segmentation folder's train images (labels unused) with
the same CPU-time budget, then a frozen linear probe and a Semantic-FPN fine-tune scored on its val split, over
several seeds, beside the untrained networks of each initialisation; the papers' orderings as paired differences.

    python benchmarks/dense_transfer.py                              # CamVid, 20 CPU-minutes per run, seeds 0 1 2
    python benchmarks/dense_transfer.py --methods control control_zero pixpro --seeds 0
    python benchmarks/dense_transfer.py --calibrate-only             # time each method's step on a quiet machine
    python benchmarks/dense_transfer.py --table                      # rewrite the tables from the measured rows
    python benchmarks/dense_transfer.py --quick                      # smoke test (0.2 CPU-min, numbers meaningless)

The budget becomes a step count per method by a short timed warm-up run (recorded once per method, budget and
machine, and reused by every seed, so all seeds of a method train the same number of steps). Each (method, seed)
row is appended to ``results/dense_transfer.jsonl`` as soon as it is measured; a re-run skips rows measured with the
same benchmark version and settings; pre-training checkpoints every 100 steps and pre-trained backbones are kept
under ``runs/dense_transfer/`` (``--runs``), so an interrupted row resumes where it stopped (exact resume: the same numbers).
``dense_transfer.{json,md}`` are rewritten after every row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, git_commit, machine, mean_std, paired_difference, read_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PIXELSSL_CAMVID", REPO.parent / "shared" / "data" / "camvid"))
NAME = "dense_transfer"
BENCH_VERSION = 1  # bump when the pre-training, probe or fine-tune code changes what a row measures
ZERO = "model.zero_init_residual=true"

# name -> (label, demo preset, overrides). Controls are the untrained starting networks of seed s.
METHODS: dict[str, tuple[str, str, list[str]]] = {
    "control": ("random init", "pixpro_r18_demo", ["model.zero_init_residual=false"]),
    "control_zero": ("random init, zero-init residual", "pixpro_r18_demo", [ZERO]),
    "moco": ("MoCo-v2", "moco_r18_demo", []),
    "pixcontrast": ("PixContrast", "pixcontrast_r18_demo", []),
    "pixpro": ("PixPro", "pixpro_r18_demo", []),
    "densecl": ("DenseCL", "densecl_r18_demo", []),
    "pixcon_coord": ("PixCon-Coord", "pixcon_coord_r18_demo", []),
    "pixcon_sim": ("PixCon-Sim", "pixcon_sim_r18_demo", []),
    "pixcon_sr": ("PixCon-SR", "pixcon_sr_r18_demo", []),
}
CONTROLS = ("control", "control_zero")

# (better, worse, paper): each claim is the paired difference better - worse; "best control" is the control with the
# higher mean in that evaluation.
CLAIMS = (("pixpro", "pixcontrast", "PixPro"), ("pixcontrast", "moco", "PixPro"), ("moco", "best control", "PixPro"),
          ("pixcon_sr", "pixcon_sim", "PixCon"), ("pixcon_sim", "pixcon_coord", "PixCon"),
          ("pixcon_sim", "densecl", "PixCon"))
# The goals on the frozen probe: method >= best control + 3 and >= MoCo-v2 + 1.
GOALS = (("pixpro", "best control", 3.0), ("pixcontrast", "best control", 3.0), ("pixcon_sr", "best control", 3.0),
         ("pixpro", "moco", 1.0), ("pixcontrast", "moco", 1.0), ("pixcon_sr", "moco", 1.0))
EVALS = ("probe", "finetune")


def settings(args: argparse.Namespace) -> dict:
    """Everything besides method and seed that a row's numbers depend on (part of its key)."""
    return {"version": BENCH_VERSION, "data": Path(args.data).name, "budget_min": args.budget_min,
            "image_size": args.image_size, "batch_size": 32,
            "probe": {"levels": ["c4", "c5"], "image_size": args.probe_size, "epochs": args.probe_epochs},
            "finetune": {"head": "fpn", "steps": args.ft_steps, "batch_size": 8, "image_size": args.ft_size,
                         "crop": args.ft_crop, "lr": 0.01}}


def key_of(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


CHECKPOINT_EVERY = 100  # an interrupted pre-training resumes from its last checkpoint (exact resume: same row)


def pretrain_config(name: str, seed: int, steps: int, args: argparse.Namespace, out: Path,
                    checkpoint_every: int = 1000000):
    from pixelssl.config import PretrainConfig, load_config

    _, preset, overrides = METHODS[name]
    return load_config(PretrainConfig, preset, [
        f"data.root={Path(args.data) / 'train' / 'images'}", f"data.image_size={args.image_size}",
        f"train.max_steps={steps}", f"train.seed={seed}", f"run.output_dir={out.parent}", f"run.name={out.name}",
        f"train.checkpoint_every={checkpoint_every}", "train.tensorboard=false", "train.progress=false", *overrides])


def calibrate(name: str, args: argparse.Namespace, rows: list[dict]) -> dict:
    """Steps that fit the budget for a method: a timed warm-up run (first step excluded), recorded once."""
    from pixelssl.train.loop import pretrain

    info = machine()
    key = key_of("calibration", name, settings(args), info["cpu"], info["cores"])
    for row in rows:
        if row.get("key") == key:
            return row
    warm = args.calibration_steps
    out = args.runs / f"calibrate_{name}"
    shutil.rmtree(out, ignore_errors=True)
    one = pretrain(pretrain_config(name, 0, 1, args, out)).seconds  # start-up and the first, slow step
    shutil.rmtree(out, ignore_errors=True)
    total = pretrain(pretrain_config(name, 0, warm + 1, args, out)).seconds
    shutil.rmtree(out, ignore_errors=True)
    step_s = max(total - one, 1e-3) / warm
    steps = max(1, math.floor(args.budget_min * 60 / step_s))
    row = {"kind": "calibration", "key": key, "method": name, "step_s": round(step_s, 3), "steps": steps,
           "budget_min": args.budget_min, "date": info["date"], "commit": git_commit()}
    append_jsonl(args.results / "dense_transfer.jsonl", row)
    rows.append(row)
    print(f"{name}: {step_s:.2f} s per step -> {steps} steps in {args.budget_min} min", flush=True)
    return row


def evaluate(backbone: torch.nn.Module, args: argparse.Namespace, seed: int) -> dict:
    from pixelssl.data.datasets import SegmentationFolder
    from pixelssl.evaluate.probe import ProbeConfig, linear_probe
    from pixelssl.evaluate.segmentation import FinetuneConfig, finetune_segmentation

    s = settings(args)
    train, val = SegmentationFolder(Path(args.data) / "train"), SegmentationFolder(Path(args.data) / "val")
    out = {}
    if "probe" in args.evals:
        p = s["probe"]
        result = linear_probe(backbone, train, val, ProbeConfig(levels=p["levels"], image_size=p["image_size"],
                                                                epochs=p["epochs"]))
        out["probe"] = {"miou": result["miou"], "pixel_acc": result["pixel_acc"], "seconds": result["timing"]["total_s"]}
    if "finetune" in args.evals:
        f = s["finetune"]
        cfg = FinetuneConfig(head="fpn", steps=f["steps"], batch_size=f["batch_size"], image_size=f["image_size"],
                             lr=f["lr"], seed=seed)
        cfg.augmentation.crop_size = [f["crop"], f["crop"]]
        result = finetune_segmentation(backbone, train, val, cfg)
        out["finetune"] = {"miou": result["miou"], "pixel_acc": result["pixel_acc"],
                           "seconds": result["timing"]["total_s"]}
    return out


def measure(name: str, seed: int, args: argparse.Namespace, rows: list[dict]) -> dict:
    from pixelssl.engine.runtime import seed_everything
    from pixelssl.methods.registry import build_method
    from pixelssl.models.backbones import build_backbone
    from pixelssl.train.loop import pretrain

    row: dict = {"kind": "row", "method": name, "seed": seed}
    out = args.runs / f"{name}_s{seed}_{key_of(name, seed, settings(args))}"
    if name in CONTROLS:
        cfg = pretrain_config(name, seed, 1, args, out)
        seed_everything(seed)  # the very network a run with this seed starts from
        backbone = build_method(cfg).backbone
        row.update(steps=0, pretrain_s=0.0)
    else:
        steps = calibrate(name, args, rows)["steps"]
        cfg = pretrain_config(name, seed, steps, args, out, CHECKPOINT_EVERY)
        weights = out / "backbone.safetensors"
        if not weights.is_file():  # a finished pre-training of an interrupted row is reused
            if (out / "checkpoints" / "last.pt").is_file():
                print(f"{name} seed {seed}: resuming the interrupted pre-training in {out}", flush=True)
                # a run started before checkpoints were periodic keeps its saved setting unless told
                result = pretrain(resume=out, overrides=[f"train.checkpoint_every={CHECKPOINT_EVERY}"])
                first_loss = next(r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r)  # step 1's
            else:
                shutil.rmtree(out, ignore_errors=True)
                result = pretrain(cfg)
                first_loss = result.first_loss
            (out / "pretrain.json").write_text(json.dumps({"seconds": result.seconds, "first_loss": first_loss,
                                                           "final_loss": result.final_loss}))
        done = json.loads((out / "pretrain.json").read_text())
        backbone = build_backbone(cfg.model.backbone, str(weights))
        row.update(steps=steps, pretrain_s=round(done["seconds"], 1), first_loss=done["first_loss"],
                   final_loss=done["final_loss"])
    row.update(evaluate(backbone, args, seed))
    return row


def summarise(rows: list[dict], args: argparse.Namespace) -> tuple[dict, str]:
    current = key_of(settings(args))
    measured = [r for r in rows if r.get("kind") == "row" and r.get("settings_key") == current]
    scores: dict[str, dict[str, dict[int, float]]] = {e: {} for e in EVALS}
    for r in measured:
        for e in EVALS:
            if e in r:
                scores[e].setdefault(r["method"], {})[r["seed"]] = 100 * r[e]["miou"]
    s = settings(args)
    lines = [f"Dense transfer on {s['data']} (ResNet-18): each method pre-trained on the train images (labels unused) "
             f"for {args.budget_min:g} CPU-minutes ({s['image_size']} px views, batch 32, steps set by a timed "
             f"warm-up), then a frozen linear probe (C4+C5, {s['probe']['image_size']} px, {s['probe']['epochs']} "
             f"epochs) and a Semantic-FPN fine-tune ({s['finetune']['steps']} steps x batch 8, {s['finetune']['crop']} "
             f"px crops) on the train labels, val mIoU; mean +- std over seeds. Controls: the untrained starting "
             f"networks of the same seeds.", "",
             "| method | steps | seeds | probe mIoU | fine-tune mIoU | pre-train s |", "|---|---|---|---|---|---|"]
    summary: dict = {"settings": s, "methods": {}, "claims": [], "goals": []}
    for name, (label, _, _) in METHODS.items():
        group = [r for r in measured if r["method"] == name]
        if not group:
            continue
        cells, entry = [], {"label": label, "steps": sorted({r["steps"] for r in group})}
        for e in EVALS:
            values = list(scores[e].get(name, {}).values())
            if values:
                mean, std = mean_std(values)
                entry[e] = {"mean": mean, "std": std, "seeds": len(values)}
                cells.append(f"{mean:.1f} +- {std:.1f}" if len(values) > 1 else f"{mean:.1f}")
            else:
                cells.append("-")
        summary["methods"][name] = entry
        steps = "/".join(str(v) for v in entry["steps"])
        lines.append(f"| {label} | {steps} | {len(group)} | {cells[0]} | {cells[1]} | "
                     f"{sum(r['pretrain_s'] for r in group) / len(group):.0f} |")

    def resolve(name: str, e: str) -> str:
        if name != "best control":
            return name
        present = [c for c in CONTROLS if scores[e].get(c)]
        return max(present, key=lambda c: mean_std(list(scores[e][c].values()))[0]) if present else "control"

    def label(name: str) -> str:
        return METHODS[name][0] if name in METHODS else name

    lines += ["", "Paired differences by seed (mean and 95% t-interval, mIoU points); a claim holds with 95% "
              "confidence when the interval lies above 0.", "",
              "| paper's claim | evaluation | difference | 95% interval | seeds | holds |", "|---|---|---|---|---|---|"]
    for better, worse, paper in CLAIMS:
        for e in EVALS:
            b, w = resolve(better, e), resolve(worse, e)
            diff = paired_difference(scores[e].get(b, {}), scores[e].get(w, {}))
            if diff is None:
                continue
            verdict = "yes" if diff["low"] > 0 else ("no (reversed)" if diff["high"] < 0 else "not shown")
            summary["claims"].append({"paper": paper, "better": b, "worse": w, "eval": e, **diff, "holds": verdict})
            lines.append(f"| {paper}: {label(b)} > {label(w)} | {e} | {diff['mean']:+.1f} | "
                         f"[{diff['low']:+.1f}, {diff['high']:+.1f}] | {len(diff['seeds'])} | {verdict} |")
    lines += ["", "Goals (frozen probe): mean paired difference against the target margin.", "",
              "| goal | difference | 95% interval | met |", "|---|---|---|---|"]
    for name, other, margin in GOALS:
        o = resolve(other, "probe")
        diff = paired_difference(scores["probe"].get(name, {}), scores["probe"].get(o, {}))
        if diff is None:
            continue
        summary["goals"].append({"method": name, "against": o, "margin": margin, **diff,
                                 "met": diff["mean"] >= margin})
        lines.append(f"| {label(name)} >= {label(o)} + {margin:g} | {diff['mean']:+.1f} | "
                     f"[{diff['low']:+.1f}, {diff['high']:+.1f}] | {'yes' if diff['mean'] >= margin else 'no'} |")
    return summary, "\n".join(lines)


def write_tables(rows: list[dict], args: argparse.Namespace) -> None:
    summary, table = summarise(rows, args)
    summary["machine"] = machine()
    (args.results / "dense_transfer.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.results / "dense_transfer.md").write_text(table + "\n")
    print(table, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="segmentation folder with train/ and val/")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (with --quick: 0)")
    parser.add_argument("--budget-min", type=float, default=None,
                        help="CPU-minutes of pre-training per run (default 20; with --quick 0.2)")
    parser.add_argument("--evals", nargs="+", default=list(EVALS), choices=EVALS)
    parser.add_argument("--image-size", type=int, default=96, help="side of the pre-training views")
    parser.add_argument("--probe-size", type=int, default=180, help="shorter side of the probe's images")
    parser.add_argument("--probe-epochs", type=int, default=30)
    parser.add_argument("--ft-steps", type=int, default=300, help="Semantic-FPN fine-tune steps (batch 8)")
    parser.add_argument("--ft-size", type=int, default=180, help="shorter side of the fine-tune's images")
    parser.add_argument("--ft-crop", type=int, default=176, help="side of the fine-tune's square training crops")
    parser.add_argument("--calibration-steps", type=int, default=5, help="timed warm-up steps per method")
    parser.add_argument("--table", action="store_true", help="only rewrite the tables from the measured rows")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="only time the methods' steps (do this on a quiet machine: the step counts are kept)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny budget, probe and fine-tune, one seed: checks that the script runs")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of the .jsonl / .json / .md results (default benchmarks/results; with --quick a "
                             "temporary folder)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="parent of the pre-training runs and their checkpoints (default runs/dense_transfer; "
                             "with --quick a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.probe_epochs, args.ft_steps, args.calibration_steps = 1, 2, 1
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.budget_min is None:
        args.budget_min = 0.2 if args.quick else 20.0
    if args.results is None:
        args.results = Path(tempfile.mkdtemp(prefix="dense_transfer_")) if args.quick else RESULTS
    temporary_runs = args.runs is None and args.quick
    if args.runs is None:
        args.runs = Path(tempfile.mkdtemp(prefix="dense_transfer_runs_")) if args.quick else REPO / "runs" / NAME
    try:
        run(args)
    finally:
        if temporary_runs:
            shutil.rmtree(args.runs, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    """Calibrate, then measure the missing (method, seed) rows, seeds outermost."""
    args.results.mkdir(parents=True, exist_ok=True)
    if not (Path(args.data) / "train" / "images").is_dir() or not (Path(args.data) / "val" / "images").is_dir():
        raise SystemExit(f"dense_transfer: {args.data} must hold train/images, train/labels, val/images, val/labels")
    if args.budget_min <= 0:
        raise SystemExit(f"dense_transfer: --budget-min must be > 0 (got {args.budget_min})")
    rows = read_jsonl(args.results / "dense_transfer.jsonl")
    if args.table:
        write_tables(rows, args)
        return
    for name in args.methods:  # every budget is timed first, before later rows load the machine
        if name not in CONTROLS:
            calibrate(name, args, rows)
    if args.calibrate_only:
        return
    current = key_of(settings(args))
    for seed in args.seeds:  # seeds outermost: every method gets a first seed before any gets a third
        for name in args.methods:
            key = key_of("row", name, seed, settings(args), sorted(args.evals))
            if any(r.get("key") == key for r in rows):
                continue
            started = time.perf_counter()
            row = measure(name, seed, args, rows)
            row.update(key=key, settings_key=current, date=machine()["date"], commit=git_commit(),
                       wall_s=round(time.perf_counter() - started, 1))
            append_jsonl(args.results / "dense_transfer.jsonl", row)
            rows.append(row)
            print(f"{name} seed {seed}: " + ", ".join(f"{e} {100 * row[e]['miou']:.1f}" for e in EVALS if e in row),
                  flush=True)
            write_tables(rows, args)


if __name__ == "__main__":
    main()
