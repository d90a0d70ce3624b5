"""Inpainting quality on CamVid after the same CPU training budget: DeepFill v1, its no-attention ablation, Telea, NS.

    python benchmarks/inpaint_quality.py                    # 60 CPU-minutes per model in 6 chunks (~2.5 h in all)
    python benchmarks/inpaint_quality.py --calibrate-only   # time each model's step (do this on a quiet machine)
    python benchmarks/inpaint_quality.py --table --plot     # rewrite the tables (and the curve's PNG) from the rows
    python benchmarks/inpaint_quality.py --quick            # smoke test: tiny models, budget and images, temp folders

Training. The full model and the no-attention model (``model.contextual_attention=false``, same convolutions, the
layer skipped) train on random ``--size`` crops of ``camvid/train/images`` with the release's holes (a box of half
the side, shrunk by 0..1/16 of the side per side: 96-128 px at 256 px), from the same seed, data order and holes.
The budget is CPU time, not wall-clock time (which a loaded machine would hand out unfairly): a short timed warm-up
per model (``--calibration-steps`` steps, the first one excluded, median step time; recorded once per model,
settings and machine in the .jsonl and reused) turns ``--minutes`` into a step count, so each model trains
``minutes * 60 / step_s`` steps. Settings, at the release's 256 px crops: ``cnum 16`` (release 32: the generator's
forward at 256 px costs 13 GFLOP per image against 49, a whole training step ~70 against ~250, so 60 CPU-minutes
on 2 cores at 50-90 GFLOP/s buy ~300-600 steps of batch 8 instead of ~90-160), ``batch 8`` (release 16: twice the
steps; no normalisation layer depends on the batch), ``lr 5e-4`` (release 1e-4, tuned for ~1M steps; a few
hundred Adam steps at 1e-4 barely leave the initialisation), ``1 critic step`` per generator step (release 5:
each costs a generator forward and a critic update on a fresh batch, five of them ~3x the CPU of the generator's
own step, while the adversarial terms weigh 0.001 against the L1 terms' 1.2), on a fresh batch as released;
everything else (critics of ``2 * cnum`` channels, losses, Adam betas, the release config's discount 0.9, TF
padding and resizes, Glorot init, rectangular training holes) is the release's.
``--gamma 0.99 --models full`` trains the full model with the paper's discount instead (its own run and rows);
the tables always describe the release's discount and add a section that compares the full model trained with
each discount, chunk by chunk and image by image. That comparison set ``loss.gamma``'s default to the paper's 0.99
(docs/inpainting.md says why).

Resumable, with a curve. Each model's run lives in ``runs/inpaint_quality/<model>_<settings hash>/`` and trains
in ``--chunks`` chunks (default 6 of budget / 6): each chunk resumes the run (``train_inpainting(resume=...)``, exact
on CPU) with a larger ``train.max_steps``, keeps a copy of the generator at that step, and evaluates it; the row
(model, chunk, steps, CPU-minutes so far, metrics per hole setting) is appended to
``results/inpaint_quality.jsonl`` at once, and ``inpaint_quality.{json,md}`` are rewritten after every row. A
re-run skips rows measured with the same benchmark version and settings and resumes training at the last
checkpoint. The run directory's name does not depend on the budget, so a larger ``--minutes`` extends the same
run. Telea and Navier-Stokes are measured once.

Evaluation. CamVid val (101 images) as ``--size`` centre crops, in two seeded hole settings
(``pixelssl.inpaint.evaluate.evaluation_holes``): ``large`` rectangles with sides drawn uniformly in 96-128 px per
image (at 256 px; 3/8 to 1/2 of the side) and ``freeform`` strokes (1-6 thick random polylines anywhere; 11% of
the image on average). Scores: L1, PSNR and SSIM over the hole (``metrics.hole_metrics``) and over the whole
completed image (known pixels kept), and seconds per image (batches of 4, on this CPU). The goal check compares
the full model with Telea, NS and the no-attention model on the large holes' hole PSNR and SSIM, image by image
(mean paired difference and its 95% t-interval over the images).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, git_commit, machine, mean_std, paired_difference, read_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAMVID = Path(os.environ.get("PIXELSSL_CAMVID", REPO.parent / "shared" / "data" / "camvid"))
NAME = "inpaint_quality"
BENCH_VERSION = 1  # bump when training, the holes or the metrics change what a row measures
MODELS = {"full": ("DeepFill v1 (contextual attention)", True), "no_ca": ("same generator without CA", False)}
CLASSICAL = {"telea": "OpenCV Telea", "ns": "OpenCV Navier-Stokes"}
LABELS = {name: label for name, (label, _) in MODELS.items()} | CLASSICAL
HOLES = {"large": "large rectangular holes", "freeform": "free-form strokes"}
PER_IMAGE = ("hole_psnr", "hole_ssim")  # kept image by image in the rows, for the paired goal check
GOALS = (("full", "telea"), ("full", "ns"), ("full", "no_ca"))  # full model beats each, large holes
EVAL_BATCH = 4
BASE_GAMMA = 0.9  # the release config's spatial discount: the tables' setting (pixelssl's loss.gamma is 0.99, see docs)
DISCOUNTS = (0.9, 0.99)  # release config, paper


def key_of(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------- settings
def train_settings(args: argparse.Namespace) -> dict:
    """What a model's training depends on, besides the model and the budget (its run directory's hash)."""
    return {"version": BENCH_VERSION, "data": Path(args.camvid).name, "size": args.size, "box": args.size // 2,
            "max_delta": args.size // 8, "holes": "rect", "cnum": args.cnum, "critic_cnum": 2 * args.cnum,
            "batch_size": args.batch_size, "lr": args.lr, "critic_steps": args.critic_steps, "gamma": args.gamma,
            "seed": args.seed}


def eval_settings(args: argparse.Namespace) -> dict:
    """What an evaluation depends on, besides the filler."""
    return {"version": BENCH_VERSION, "data": Path(args.camvid).name, "images": args.eval_images, "size": args.size,
            "seed": args.seed, "holes": list(HOLES), "batch": EVAL_BATCH}


def train_key(name: str, args: argparse.Namespace) -> str:
    return key_of("train", name, train_settings(args))


def run_dir_of(name: str, args: argparse.Namespace) -> Path:
    return args.runs / f"{name}_{train_key(name, args)}"


def train_overrides(name: str, args: argparse.Namespace, out: Path, max_steps: int) -> list[str]:
    s = train_settings(args)
    return [f"run.output_dir={out.parent}", f"run.name={out.name}", f"data.root={Path(args.camvid) / 'train' / 'images'}",
            f"data.image_size={s['size']}", f"mask.kind={s['holes']}", f"mask.box_size={s['box']}",
            f"mask.max_delta={s['max_delta']}", f"model.cnum={s['cnum']}", f"model.critic_cnum={s['critic_cnum']}",
            f"model.contextual_attention={str(MODELS[name][1]).lower()}", f"train.batch_size={s['batch_size']}",
            f"train.lr={s['lr']}", f"train.critic_steps={s['critic_steps']}", f"loss.gamma={s['gamma']}",
            f"train.seed={s['seed']}",
            "train.time_budget=0", "train.image_every=0", "train.tensorboard=false", *resume_overrides(args, max_steps)]


def resume_overrides(args: argparse.Namespace, max_steps: int) -> list[str]:
    """The keys a chunk changes when it resumes (all in ``pixelssl.inpaint.train.RESUME_SAFE_KEYS``)."""
    every = max(1, math.ceil(max_steps / (4 * args.chunks)))  # ~4 checkpoints per chunk: an interruption loses little
    return [f"train.max_steps={max_steps}", f"train.checkpoint_every={every}", "train.log_every=10",
            f"train.threads={args.threads}", f"train.progress={str(args.progress).lower()}"]


# ---------------------------------------------------------------------------------------------- calibration
def calibration_key(name: str, args: argparse.Namespace) -> str:
    info = machine()
    return key_of("calibration", name, train_settings(args), info["cpu"], info["cores"], torch.get_num_threads())


def find_calibration(name: str, args: argparse.Namespace, rows: list[dict]) -> dict | None:
    """This machine's calibration of the model, else (for --table elsewhere) the newest one with these settings."""
    key, tkey = calibration_key(name, args), train_key(name, args)
    mine = [r for r in rows if r.get("kind") == "calibration" and r.get("key") == key]
    other = [r for r in rows if r.get("kind") == "calibration" and r.get("train_key") == tkey]
    return (mine or other or [None])[-1]


def calibrate(name: str, args: argparse.Namespace, rows: list[dict]) -> dict:
    """Seconds per training step of a model: a timed warm-up run (first step excluded, median), recorded once."""
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import train_inpainting

    found = find_calibration(name, args, rows)
    if found is not None and found["key"] == calibration_key(name, args):
        return found
    warm = max(1, args.calibration_steps)
    out = args.runs / f"calibrate_{name}_{train_key(name, args)}"
    shutil.rmtree(out, ignore_errors=True)
    overrides = train_overrides(name, args, out, warm + 1) + ["train.log_every=1", "train.checkpoint_every=1000000"]
    result = train_inpainting(load_config(InpaintConfig, overrides=overrides))
    per_step = [args.batch_size / r["img_per_s"] for r in read_jsonl(out / "metrics.jsonl")
                if r.get("step", 0) >= 2 and r.get("img_per_s")]
    step_s = statistics.median(per_step) if per_step else result.seconds / (warm + 1)
    shutil.rmtree(out, ignore_errors=True)
    info = machine()
    row = {"kind": "calibration", "key": calibration_key(name, args), "train_key": train_key(name, args),
           "model": name, "step_s": round(step_s, 4), "warmup_steps": warm, "threads": torch.get_num_threads(),
           "cpu": info["cpu"], "cores": info["cores"], "date": info["date"], "commit": git_commit()}
    append_jsonl(args.results / f"{NAME}.jsonl", row)
    rows.append(row)
    print(f"{name}: {step_s:.2f} s per step -> {total_steps(row, args)} steps in {args.minutes:g} CPU-minutes",
          flush=True)
    return row


def total_steps(calibration: dict, args: argparse.Namespace) -> int:
    return max(args.chunks, math.floor(args.minutes * 60 / calibration["step_s"]))


def chunk_targets(calibration: dict, args: argparse.Namespace) -> list[int]:
    """The step each chunk trains to: budget * k / chunks, the last one the whole budget."""
    total = total_steps(calibration, args)
    return [math.ceil(total * k / args.chunks) for k in range(1, args.chunks + 1)]


# ---------------------------------------------------------------------------------------------- evaluation
def evaluation_data(args: argparse.Namespace) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from pixelssl.data.datasets import ImageFolder
    from pixelssl.inpaint.evaluate import evaluation_holes, evaluation_images

    images = evaluation_images(ImageFolder(Path(args.camvid) / "val" / "images"), args.eval_images, args.size)
    return images, {kind: evaluation_holes(images.shape[0], args.size, kind, args.seed) for kind in HOLES}


def measure(fill, data) -> dict:
    """Scores of one filler in every hole setting: means, and the per-image values of ``PER_IMAGE``."""
    from pixelssl.inpaint.evaluate import evaluate_fillers

    images, holes = data
    metrics, per_image = {}, {}
    for kind, hole in holes.items():
        result = evaluate_fillers({"f": fill}, images, hole, EVAL_BATCH, per_image=PER_IMAGE)["f"]
        per_image[kind] = {k: [round(v, 5) for v in values] for k, values in result.pop("per_image").items()}
        metrics[kind] = {k: round(v, 6) for k, v in result.items()}
    return {"images": images.shape[0], "metrics": metrics, "per_image": per_image}


def measure_classical(name: str, args: argparse.Namespace, rows: list[dict], data) -> None:
    from pixelssl.inpaint.evaluate import opencv_filler

    key = key_of("classical", name, eval_settings(args))
    if any(r.get("key") == key for r in rows):
        return
    row = {"kind": "classical", "key": key, "eval_key": key_of(eval_settings(args)), "method": name,
           **measure(opencv_filler(name), data), "date": machine()["date"], "commit": git_commit()}
    finish(row, args, rows)


def last_checkpoint_step(run_dir: Path) -> int:
    """The step of the run's newest numbered checkpoint (0 when it has none)."""
    steps = [int(m.group(1)) for p in (run_dir / "checkpoints").glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))]
    return max(steps, default=0)


def train_to(name: str, args: argparse.Namespace, steps: int) -> tuple[Path, float]:
    """The generator after ``steps`` steps (trained now if needed, resuming the run) and the seconds trained now."""
    from pixelssl.config import load_config
    from pixelssl.inpaint.config import InpaintConfig
    from pixelssl.inpaint.train import WEIGHTS_FILE, train_inpainting

    run_dir = run_dir_of(name, args)
    snapshot = run_dir / "generators" / f"step_{steps:08d}.safetensors"
    if snapshot.is_file():
        return snapshot, 0.0
    done = last_checkpoint_step(run_dir)
    if done > steps:
        raise SystemExit(f"{NAME}: {run_dir} is at step {done}, past {steps}, and kept no generator at {steps}; "
                         f"remove the folder to measure this budget")
    print(f"{name}: training steps {done} -> {steps}", flush=True)
    if done == 0:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run that died before its first checkpoint starts afresh
        result = train_inpainting(load_config(InpaintConfig, overrides=train_overrides(name, args, run_dir, steps)))
    else:
        result = train_inpainting(resume=run_dir, overrides=resume_overrides(args, steps))
    if result.steps != steps:
        raise SystemExit(f"{NAME}: {name} stopped at step {result.steps}, not {steps}")
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / WEIGHTS_FILE, snapshot)
    return snapshot, result.seconds


def measure_chunk(name: str, chunk: int, steps: int, calibration: dict, args: argparse.Namespace,
                  rows: list[dict], data) -> None:
    from pixelssl.inpaint.evaluate import generator_filler
    from pixelssl.inpaint.fill import load_generator

    ekey = key_of(eval_settings(args))
    key = key_of("chunk", name, train_key(name, args), ekey, steps)
    if any(r.get("key") == key for r in rows):
        return
    weights, train_s = train_to(name, args, steps)
    row = {"kind": "chunk", "key": key, "train_key": train_key(name, args), "eval_key": ekey, "model": name,
           "chunk": chunk, "chunks": args.chunks, "steps": steps, "budget_min": args.minutes,
           "cpu_min": round(steps * calibration["step_s"] / 60, 2), "step_s": calibration["step_s"],
           "train_s": round(train_s, 1), **measure(generator_filler(load_generator(weights)), data),
           "date": machine()["date"], "commit": git_commit()}
    finish(row, args, rows)


def finish(row: dict, args: argparse.Namespace, rows: list[dict]) -> None:
    append_jsonl(args.results / f"{NAME}.jsonl", row)
    rows.append(row)
    who = row.get("model", row.get("method"))
    where = f" chunk {row['chunk']}/{row['chunks']} (step {row['steps']}, {row['cpu_min']:g} CPU-min)" \
        if row["kind"] == "chunk" else ""
    print(f"{who}{where}: " + ", ".join(f"{kind} hole PSNR {m['hole_psnr']:.2f} SSIM {m['hole_ssim']:.3f}"
                                        for kind, m in row["metrics"].items()), flush=True)
    write_tables(rows, args)


# -------------------------------------------------------------------------------------------------- tables
def with_gamma(args: argparse.Namespace, gamma: float) -> argparse.Namespace:
    """The same settings with another discount (``run_gamma`` keeps the one this run was started with)."""
    return argparse.Namespace(**{"run_gamma": args.gamma, **vars(args), "gamma": gamma})


def model_curve(name: str, args: argparse.Namespace, rows: list[dict], ekey: str) -> dict:
    """A model's calibration, chunk targets, measured curve, final row (None until the budget is spent) and latest row."""
    calibration = find_calibration(name, args, rows)
    chunks = {r["steps"]: r for r in rows if r.get("kind") == "chunk" and r.get("model") == name
              and r.get("train_key") == train_key(name, args) and r.get("eval_key") == ekey}
    targets = chunk_targets(calibration, args) if calibration else sorted(chunks)
    curve = [chunks[s] for s in targets if s in chunks]
    final = chunks.get(targets[-1]) if targets else None
    return {"calibration": calibration, "targets": targets, "curve": curve, "final": final,
            "latest": curve[-1] if curve else None}


def collect(rows: list[dict], args: argparse.Namespace) -> dict:
    """The rows of the current settings: classical rows by method, and each model's curve and final row."""
    ekey = key_of(eval_settings(args))
    classical = {r["method"]: r for r in rows if r.get("kind") == "classical" and r.get("eval_key") == ekey}
    return {"classical": classical, "models": {name: model_curve(name, args, rows, ekey) for name in MODELS}}


def discount_comparison(rows: list[dict], args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """The full model trained with each spatial discount (same CPU budget) against the release's, paired by image: at
    the last chunk both runs have reached (the same fraction of the budget), then chunk by chunk."""
    ekey = key_of(eval_settings(args))
    gammas = sorted({*DISCOUNTS, getattr(args, "run_gamma", args.gamma)})
    by_chunk = {g: {r["chunk"]: r for r in model_curve("full", with_gamma(args, g), rows, ekey)["curve"]} for g in gammas}
    by_chunk = {g: c for g, c in by_chunk.items() if c}
    if BASE_GAMMA not in by_chunk or len(by_chunk) < 2:
        return [], []
    common = sorted(set.intersection(*(set(c) for c in by_chunk.values())))
    if not common:
        return [], []
    chunk = common[-1]  # the same chunk (the same share of the budget) for every discount
    lines = ["**Spatial discount** (`loss.gamma`, the weight of the hole L1 at distance d from the known pixels is "
             "gamma^d): the full model trained with each discount for the same CPU budget, all scored at chunk "
             f"{chunk}, the last one every run has reached; differences from the release's {BASE_GAMMA:g} (the "
             "tables' setting), mean over the images with its 95% t-interval.", "",
             "| discount | chunk | steps | large: hole PSNR | large: hole SSIM | free-form: hole PSNR | "
             "free-form: hole SSIM | large PSNR vs release | large SSIM vs release |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    found = []
    base = by_chunk[BASE_GAMMA]
    for gamma, curve in by_chunk.items():
        row = curve[chunk]
        by_c = {c: _discount_differences(curve[c], base[c]) for c in common} if gamma != BASE_GAMMA else {}
        diffs = by_c.get(chunk, {})
        points = []
        for c in common:
            point = {"chunk": c, "cpu_min": curve[c]["cpu_min"],
                     **{f"{kind}_hole_psnr": curve[c]["metrics"][kind]["hole_psnr"] for kind in HOLES}}
            if c in by_c:
                point["vs_default"] = {f"{k}_{m}": d for (k, m), d in by_c[c].items()}
            points.append(point)
        found.append({"gamma": gamma, "chunk": row["chunk"], "steps": row["steps"], "base_steps": base[chunk]["steps"],
                      **{f"{kind}_{m}": row["metrics"][kind][m] for kind in HOLES for m in PER_IMAGE},
                      **{f"large_{m}_vs_default": diffs.get(("large", m)) for m in PER_IMAGE}, "curve": points})
        m = {kind: row["metrics"][kind] for kind in HOLES}
        cells = ["-" if not diffs else _interval(diffs["large", metric], metric) for metric in PER_IMAGE]
        lines.append(f"| {gamma:g}{' (release)' if gamma == BASE_GAMMA else ''} | {row['chunk']}/{row['chunks']} | "
                     f"{row['steps']} | {m['large']['hole_psnr']:.2f} | {m['large']['hole_ssim']:.4f} | "
                     f"{m['freeform']['hole_psnr']:.2f} | {m['freeform']['hole_ssim']:.4f} | " + " | ".join(cells) + " |")
    lines += ["", "Chunk by chunk (each pair at the same share of the budget), difference from the release's discount, "
              "mean over the images with its 95% t-interval:", "",
              "| discount | chunk | CPU-min | large: hole PSNR | large: hole SSIM | free-form: hole PSNR | "
              "free-form: hole SSIM |", "|---|---:|---:|---|---|---|---|"]
    for entry in (e for e in found if e["gamma"] != BASE_GAMMA):
        for point in entry["curve"]:
            d = point["vs_default"]
            lines.append(f"| {entry['gamma']:g} | {point['chunk']} | {point['cpu_min']:.1f} | " + " | ".join(
                _interval(d[f"{kind}_{m}"], m) for kind in HOLES for m in PER_IMAGE) + " |")
    return found, [*lines, ""]


def _discount_differences(row: dict, base: dict) -> dict:
    """(hole setting, metric) -> the paired difference row - base over the images."""
    out = {}
    for kind in HOLES:
        for metric in PER_IMAGE:
            diff = paired_difference(*(dict(enumerate(r["per_image"][kind][metric])) for r in (row, base)))
            out[kind, metric] = diff and {k: diff[k] for k in ("mean", "low", "high")}
    return out


def _interval(diff: dict | None, metric: str) -> str:
    if diff is None:
        return "-"
    fmt = "{:+.2f}" if metric == "hole_psnr" else "{:+.4f}"
    return f"{fmt.format(diff['mean'])} [{fmt.format(diff['low'])}, {fmt.format(diff['high'])}]"


def goal_checks(found: dict) -> list[dict]:
    """Full model minus each rival on the large holes' hole PSNR and SSIM, paired by image."""
    rows = {name: m["latest"] for name, m in found["models"].items()} | found["classical"]
    checks = []
    for better, worse in GOALS:
        if rows.get(better) is None or rows.get(worse) is None:
            continue
        for metric in PER_IMAGE:
            a, b = (dict(enumerate(rows[n]["per_image"]["large"][metric])) for n in (better, worse))
            diff = paired_difference(a, b)
            if diff is None:
                continue
            checks.append({"better": better, "worse": worse, "holes": "large", "metric": metric,
                           "mean": diff["mean"], "low": diff["low"], "high": diff["high"], "images": len(a),
                           "beats": diff["mean"] > 0, "shown": diff["low"] > 0})
    return checks


def summarise(rows: list[dict], args: argparse.Namespace) -> tuple[dict, str]:
    found = collect(rows, args)
    s, e = train_settings(args), eval_settings(args)
    models = found["models"]
    calib = {n: m["calibration"] for n, m in models.items()}
    steps_text = ", ".join(f"{n} {m['targets'][-1]} steps ({calib[n]['step_s']:.2f} s/step)" for n, m in models.items()
                           if calib[n] and m["targets"]) or "not calibrated yet"
    dates = sorted({r["date"] for r in rows if r.get("kind") in ("chunk", "classical")
                    and (r.get("eval_key") == key_of(e))})
    done = all(m["final"] is not None for m in models.values())
    state = "" if done else " In progress: " + ", ".join(
        f"{n} at chunk {m['latest']['chunk'] if m['latest'] else 0}/{args.chunks}" for n, m in models.items()) + "."
    counts = sorted({r["images"] for r in [*found["classical"].values(), *(r for m in models.values() for r in m["curve"])]})
    images = "/".join(str(c) for c in counts) or f"up to {args.eval_images}"
    lines = [f"Inpainting quality on CamVid val ({images} images, {e['size']} px centre crops, seeded "
             f"holes, seed {e['seed']}), measured {' to '.join([dates[0], dates[-1]] if len(dates) > 1 else dates) or '-'} "
             f"on {machine()['cores']} cores. Training: {args.minutes:g} CPU-minutes per model on CamVid train "
             f"({s['size']} px random crops, release rect holes in a {s['box']} px box), steps set by a timed "
             f"warm-up: {steps_text}; cnum {s['cnum']} (release 32), batch {s['batch_size']} (release 16), lr "
             f"{s['lr']:g} (release 1e-4), {s['critic_steps']} critic step(s) per generator step on a fresh batch "
             f"(release 5), discount {s['gamma']:g}: smaller and cheaper than the release so that the CPU budget "
             f"buys a few hundred steps rather than under a hundred (why each: the script's docstring).{state}", ""]
    final_rows = {n: m["final"] or m["latest"] for n, m in models.items()} | found["classical"]
    summary: dict = {"settings": {"train": s, "eval": e, "minutes": args.minutes, "chunks": args.chunks},
                     "calibration": calib, "final": {}, "goals": [], "curve": {}}
    for kind, title in HOLES.items():
        desc = (f"sides {round(e['size'] * 3 / 8)}-{e['size'] // 2} px, uniform per image" if kind == "large"
                else "1-6 random thick polylines anywhere, ~11% of the image")
        lines += [f"**{title}** ({desc}):", "",
                  "| method | steps | hole PSNR (dB) | hole SSIM | hole L1 (%) | whole PSNR (dB) | whole SSIM | s / image |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        summary["final"][kind] = {}
        for name, row in final_rows.items():
            if row is None:
                continue
            m = row["metrics"][kind]
            steps = "-"
            if name in models:
                steps = f"{row['steps']}" + ("" if row is models[name]["final"] else " (so far)")
            spread = {k: mean_std([v for v in row["per_image"][kind][k] if math.isfinite(v)])[1] for k in PER_IMAGE}
            summary["final"][kind][name] = {"steps": row.get("steps"), **m, **{f"{k}_std": v for k, v in spread.items()}}
            lines.append(f"| {LABELS[name]} | {steps} | {m['hole_psnr']:.2f} +- {spread['hole_psnr']:.2f} | "
                         f"{m['hole_ssim']:.4f} +- {spread['hole_ssim']:.4f} | "
                         f"{100 * m['hole_l1']:.2f} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
                         f"{m['seconds_per_image']:.3f} |")
        lines.append("")
    checks = goal_checks(found)
    summary["goals"] = checks
    if checks:
        at = models["full"]["latest"]["steps"]
        lines += ["Goal: the full model beats Telea, NS and the no-attention model on hole PSNR and SSIM for large "
                  f"holes (full model at step {at}; difference full - other, mean over the images with its 95% "
                  "t-interval).", "",
                  "| full model vs | metric | difference | 95% interval | beats | shown at 95% |",
                  "|---|---|---:|---|---|---|"]
        for c in checks:
            fmt = "{:+.2f}" if c["metric"] == "hole_psnr" else "{:+.4f}"
            metric = {"hole_psnr": "hole PSNR", "hole_ssim": "hole SSIM"}[c["metric"]]
            lines.append(f"| {LABELS[c['worse']]} | {metric} | {fmt.format(c['mean'])} | "
                         f"[{fmt.format(c['low'])}, {fmt.format(c['high'])}] | {'yes' if c['beats'] else 'no'} | "
                         f"{'yes' if c['shown'] else 'no'} |")
        lines.append("")
    summary["discount"], discount_lines = discount_comparison(rows, args)
    lines += discount_lines
    lines += ["Curve: hole PSNR (dB) after each chunk, against CPU-minutes of training (steps x the calibrated step "
              "time)." + "".join(f" {LABELS[n]}: large {r['metrics']['large']['hole_psnr']:.2f}, free-form "
                                 f"{r['metrics']['freeform']['hole_psnr']:.2f}." for n, r in found["classical"].items()),
              "", "| chunk | CPU-min | full: steps | full: large | full: free-form | no CA: steps | no CA: large | "
              "no CA: free-form |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in range(max((len(m["curve"]) for m in models.values()), default=0)):
        cells, minutes = [], None
        for name in MODELS:
            curve = models[name]["curve"]
            if k < len(curve):
                r = curve[k]
                minutes = minutes or r["cpu_min"]
                cells += [str(r["steps"]), f"{r['metrics']['large']['hole_psnr']:.2f}",
                          f"{r['metrics']['freeform']['hole_psnr']:.2f}"]
            else:
                cells += ["-", "-", "-"]
        lines.append(f"| {k + 1} | {minutes:g} | " + " | ".join(cells) + " |")
    for name, m in models.items():
        summary["curve"][name] = [{"chunk": r["chunk"], "steps": r["steps"], "cpu_min": r["cpu_min"],
                                   "train_s": r["train_s"],
                                   **{f"{kind}_hole_psnr": r["metrics"][kind]["hole_psnr"] for kind in HOLES}}
                                  for r in m["curve"]]
    lines += ["", "Hole scores: L1 and PSNR over the hole's pixels, SSIM averaged over the windows centred in the hole "
              "(`pixelssl.inpaint.metrics.hole_metrics`), mean +- standard deviation over the images; whole: the "
              "completed image with its known pixels kept. "
              "s / image: batches of 4 on this CPU, while it may have been busy."]
    return summary, "\n".join(lines)


def write_tables(rows: list[dict], args: argparse.Namespace, show: bool = False) -> None:
    """The tables of the release discount's settings (a run with another ``--gamma`` adds to their discount section)."""
    summary, table = summarise(rows, with_gamma(args, BASE_GAMMA))
    summary["machine"] = machine()
    (args.results / f"{NAME}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.results / f"{NAME}.md").write_text(table + "\n")
    if show:
        print(table, flush=True)
    if args.plot:
        plot(summary, args.results / f"{NAME}.png")


def plot(summary: dict, path: Path) -> None:
    """Hole PSNR against CPU-minutes for both models (and the full model with another discount, where trained), one
    panel per hole setting, Telea and NS as lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{NAME}: matplotlib is not installed; no plot written", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(HOLES), figsize=(5 * len(HOLES), 3.6), squeeze=False)
    for ax, (kind, title) in zip(axes[0], HOLES.items()):
        for name, curve in summary["curve"].items():
            if curve:
                ax.plot([c["cpu_min"] for c in curve], [c[f"{kind}_hole_psnr"] for c in curve], "o-",
                        label=LABELS[name])
        for entry in summary.get("discount", []):
            if entry["gamma"] != BASE_GAMMA:
                ax.plot([c["cpu_min"] for c in entry["curve"]], [c[f"{kind}_hole_psnr"] for c in entry["curve"]],
                        "s--", color="tab:blue", alpha=0.6, label=f"{LABELS['full']}, discount {entry['gamma']:g}")
        for (name, final), style in zip(((n, summary["final"][kind].get(n)) for n in CLASSICAL), ("--", ":")):
            if final is not None:
                ax.axhline(final["hole_psnr"], color="grey", linestyle=style, label=LABELS[name])
        ax.set(title=title, xlabel="CPU-minutes of training", ylabel="hole PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}", flush=True)


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID, help="folder with train/images and val/images")
    parser.add_argument("--minutes", type=float, default=None,
                        help="CPU-minutes of training per model (default 60; with --quick 0.05)")
    parser.add_argument("--chunks", type=int, default=6, help="training chunks, each followed by an evaluation")
    parser.add_argument("--size", type=int, default=256, help="training crop and evaluation side (release: 256)")
    parser.add_argument("--cnum", type=int, default=16, help="generator channel base (release: 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="release: 16")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam lr (release: 1e-4; higher for short budgets)")
    parser.add_argument("--critic-steps", type=int, default=1, help="critic steps per generator step (release: 5)")
    parser.add_argument("--gamma", type=float, default=BASE_GAMMA,
                        help="spatial discount of the hole L1 (release config 0.9, paper 0.99): compare both")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="models to train and score (e.g. --gamma 0.99 --models full)")
    parser.add_argument("--eval-images", type=int, default=101, help="first N validation images (CamVid val has 101)")
    parser.add_argument("--seed", type=int, default=0, help="training and hole seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default: all cores)")
    parser.add_argument("--calibration-steps", type=int, default=3, help="timed warm-up steps per model")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="only time the models' steps (do this on a quiet machine: the step counts are kept)")
    parser.add_argument("--table", action="store_true", help="only rewrite the tables from the measured rows")
    parser.add_argument("--plot", action="store_true", help="also write inpaint_quality.png (needs matplotlib)")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder of the .jsonl / .json / .md results (default benchmarks/results; with --quick a "
                             "temporary folder)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="parent of the training runs (default runs/inpaint_quality; with --quick a temporary "
                             "folder, removed at the end)")
    parser.add_argument("--quick", action="store_true",
                        help="64 px, cnum 8, batch 2, 3 CPU-seconds per model in 2 chunks, 4 images, temporary "
                             "folders: a smoke test (numbers meaningless)")
    args = parser.parse_args(argv)
    if args.quick:
        args.chunks, args.size, args.cnum, args.batch_size = 2, 64, 8, 2
        args.eval_images, args.calibration_steps = min(args.eval_images, 4), 1
    if args.minutes is None:
        args.minutes = 0.05 if args.quick else 60.0
    if args.results is None:
        args.results = Path(tempfile.mkdtemp(prefix=f"{NAME}_")) if args.quick else RESULTS
    args.temporary_runs = args.runs is None and args.quick
    if args.runs is None:
        args.runs = Path(tempfile.mkdtemp(prefix=f"{NAME}_runs_")) if args.quick else REPO / "runs" / NAME
    args.progress = sys.stderr.isatty()
    if args.minutes <= 0 or args.chunks < 1 or args.size % 16 or args.size < 32:
        raise SystemExit(f"{NAME}: need --minutes > 0, --chunks >= 1 and --size a multiple of 16, >= 32")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    rows = read_jsonl(args.results / f"{NAME}.jsonl")
    if args.table:
        write_tables(rows, args, show=True)
        return
    if not (Path(args.camvid) / "train" / "images").is_dir() or not (Path(args.camvid) / "val" / "images").is_dir():
        raise SystemExit(f"{NAME}: CamVid not found at {args.camvid} (expected train/images and val/images; "
                         f"see --camvid or PIXELSSL_CAMVID)")
    started, measured = time.perf_counter(), len(rows)
    calibrations = {name: calibrate(name, args, rows) for name in args.models}  # both timed before anything loads the CPU
    if args.calibrate_only:
        return
    data = evaluation_data(args)
    for name in CLASSICAL:
        measure_classical(name, args, rows, data)
    targets = {name: chunk_targets(c, args) for name, c in calibrations.items()}
    for chunk in range(args.chunks):  # chunks outermost: an interrupted run has both curves to the same point
        for name in args.models:
            measure_chunk(name, chunk + 1, targets[name][chunk], calibrations[name], args, rows, data)
    write_tables(rows, args, show=True)
    new = sum(r.get("kind") in ("chunk", "classical") for r in rows[measured:])
    print(f"{new} row(s) measured, results in {args.results} ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.temporary_runs:
        shutil.rmtree(args.runs, ignore_errors=True)


if __name__ == "__main__":
    main()
