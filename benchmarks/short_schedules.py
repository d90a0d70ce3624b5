"""The short-schedule study: how each method learns within a CPU budget on the demo's settings.

Each row pre-trains one method (a demo preset plus the setting's overrides) for ``--steps`` steps with one seed on
the built-in synthetic scenes, then scores the backbone with the demo's own linear probe (C5, 300 labelled training
scenes, 150 held-out scenes at 256 px; ``pixelssl.cli.demo``). Untrained controls are the exact starting networks of
seed s (``control`` / ``control_zero``). Rows are appended to ``results/short_schedules.jsonl`` as soon as they are
measured and a re-run skips the rows it already has (same setting, overrides, seed, steps and study version), so a
long grid fills over several runs; ``short_schedules.md`` is rewritten from all rows after every row.

    python benchmarks/short_schedules.py --settings control control_zero pixpro pixpro_zero --seeds 0 1 2
    python benchmarks/short_schedules.py --list              # the settings this script knows
    python benchmarks/short_schedules.py --table             # only rewrite the markdown table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, append_jsonl, git_commit, machine, mean_std, paired_difference, read_jsonl  # noqa: E402

STUDY_VERSION = 1  # bump when the probe or the pre-training code changes what a row measures
ZERO = "model.zero_init_residual=true"
DEFAULT_INIT = "model.zero_init_residual=false"  # explicit, so a preset's default can change without moving a row

# name -> (demo preset, overrides); "control*" rows are untrained networks with the preset's initialisation.
SETTINGS: dict[str, tuple[str, list[str]]] = {
    "control": ("pixpro_r18_demo", [DEFAULT_INIT]),
    "control_zero": ("pixpro_r18_demo", [ZERO]),
    "pixpro": ("pixpro_r18_demo", [DEFAULT_INIT]),
    "pixpro_zero": ("pixpro_r18_demo", [ZERO]),
    "pixcontrast": ("pixcontrast_r18_demo", [DEFAULT_INIT]),
    "pixcontrast_zero": ("pixcontrast_r18_demo", [ZERO]),
    "moco": ("moco_r18_demo", [DEFAULT_INIT]),
    "moco_zero": ("moco_r18_demo", [ZERO]),
    "moco_release": ("moco_r18_demo", [DEFAULT_INIT, "method.symmetric=false"]),
    # PixPro sweeps around the demo recipe (zero-init: the release's initialisation)
    "pixpro_zero_ppm1": ("pixpro_r18_demo", [ZERO, "method.ppm_transform_layers=1"]),
    "pixpro_zero_lr4": ("pixpro_r18_demo", [ZERO, "train.base_lr=4.0"]),
    "pixpro_zero_lr16": ("pixpro_r18_demo", [ZERO, "train.base_lr=16.0"]),
    "pixpro_zero_m0.996": ("pixpro_r18_demo", [ZERO, "method.momentum=0.996"]),
    "pixpro_zero_m0.9": ("pixpro_r18_demo", [ZERO, "method.momentum=0.9"]),
    "pixpro_zero_gamma1": ("pixpro_r18_demo", [ZERO, "method.ppm_gamma=1.0"]),
    "pixpro_zero_crop0.08": ("pixpro_r18_demo", [ZERO, "data.crop_scale=[0.08,1.0]"]),
    "pixpro_zero_crop0.5": ("pixpro_r18_demo", [ZERO, "data.crop_scale=[0.5,1.0]"]),
    "pixpro_zero_view112": ("pixpro_r18_demo", [ZERO, "data.image_size=112"]),
    "pixpro_zero_warm0": ("pixpro_r18_demo", [ZERO, "train.warmup_epochs=0"]),
    "pixpro_zero_batch64": ("pixpro_r18_demo", [ZERO, "train.batch_size=64"]),
    "pixpro_zero_proj2048": ("pixpro_r18_demo", [ZERO, "model.proj_hidden_dim=2048", "model.proj_dim=256"]),
    "pixcontrast_zero_lr8": ("pixcontrast_r18_demo", [ZERO, "train.base_lr=8.0"]),
    "moco_zero_lr8": ("moco_r18_demo", [ZERO, "train.base_lr=8.0"]),
    "pixcon_sr": ("pixcon_sr_r18_demo", [DEFAULT_INIT]),
    "pixcon_sr_zero": ("pixcon_sr_r18_demo", [ZERO]),
    "densecl": ("densecl_r18_demo", [DEFAULT_INIT]),
}
# Learning curves: the live monitor (C5 probe on 64 labelled / 64 held-out scenes at 128 px) every 25 steps, and at
# step 0 on the untrained start; run these with --steps 300.
CURVE = ["train.monitor_every=25", "train.monitor_images=64"]
for _name in ("pixpro_zero", "pixcontrast_zero", "moco_zero", "pixpro", "pixcontrast", "moco"):
    SETTINGS[f"curve_{_name}"] = (SETTINGS[_name][0], [*SETTINGS[_name][1], *CURVE])

JSONL = RESULTS / "short_schedules.jsonl"


def row_key(setting: str, seed: int, steps: int) -> str:
    """A row's identity: study version, setting name, seed and steps (a setting's definition never changes under
    its name; the preset and overrides measured are stored in the row)."""
    text = json.dumps([STUDY_VERSION, setting, seed, 0 if setting.startswith("control") else steps])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def read_rows() -> list[dict]:
    """Measured rows, one per (setting, seed, steps): a row measured twice (two runs at once) counts once."""
    rows, seen = [], set()
    for row in read_jsonl(JSONL):
        key = (row["setting"], row["seed"], row["steps"], row.get("version"))
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def measure(setting: str, seed: int, steps: int, workdir: Path) -> dict:
    from pixelssl.cli.demo import FULL, _probe
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.engine.runtime import seed_everything
    from pixelssl.methods.registry import build_method
    from pixelssl.models.backbones import build_backbone
    from pixelssl.train.loop import pretrain

    preset, overrides = SETTINGS[setting]
    base = [f"train.seed={seed}", f"run.output_dir={workdir}", f"run.name={setting}_s{seed}",
            f"data.synthetic.num_images={FULL.pretrain_images}", "train.checkpoint_every=1000000",
            "train.tensorboard=false", "train.progress=false"]
    cfg = load_config(PretrainConfig, preset, [*base, *overrides, f"train.max_steps={max(steps, 1)}"])
    row: dict = {"setting": setting, "preset": preset, "overrides": overrides, "seed": seed}
    if setting.startswith("control"):
        seed_everything(seed)  # the very network a run with this seed starts from
        backbone = build_method(cfg).backbone
        row.update(steps=0, pretrain_s=0.0)
    else:
        curve = cfg.train.monitor_every > 0
        if curve:  # the same monitor on the untrained start: the curve's step 0
            from pixelssl.data.loader import build_two_view_dataset
            from pixelssl.train.monitor import Monitor

            seed_everything(seed)
            start = build_method(cfg)
            step0 = Monitor(cfg, build_two_view_dataset(cfg.data, seed).source, torch.device("cpu")).measure(start)
        result = pretrain(cfg)
        if curve:
            from pixelssl.engine.logger import read_metrics

            records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "monitor/probe_miou" in r]
            row["curve"] = [{"step": 0, **step0}, *records]
        backbone = build_backbone(cfg.model.backbone, str(result.backbone_path))
        row.update(steps=result.steps, pretrain_s=round(result.seconds, 1), first_loss=result.first_loss,
                   final_loss=result.final_loss)
        shutil.rmtree(result.run_dir, ignore_errors=True)
    started = time.perf_counter()
    metrics = _probe(backbone, FULL)
    row.update(miou=metrics["miou"], pixel_acc=metrics["pixel_acc"], probe_s=round(time.perf_counter() - started, 1))
    return row


def summarise(rows: list[dict]) -> str:
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["steps"]), []).append(r)
    by_seed = {key: {r["seed"]: 100 * r["miou"] for r in group} for key, group in groups.items()}
    controls = [key for key in by_seed if key[0] in ("control", "control_zero")]
    best = max(controls, key=lambda k: mean_std(list(by_seed[k].values()))[0]) if controls else None
    lines = ["Demo probe mIoU (synthetic scenes, ResNet-18, C5 linear probe on 150 held-out scenes), mean +- std over "
             "seeds; controls are the untrained starting networks of the same seeds; the last column is the paired "
             f"difference (by seed) from the best control ({best[0] if best else '-'}) with its 95% t-interval. "
             "Wall seconds were measured on a shared 2-core machine while other jobs ran: not a speed figure.", "",
             "| setting | overrides | steps | seeds | probe mIoU | min - max | vs best control | wall s / run | measured |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (setting, steps), group in sorted(groups.items(), key=lambda kv: (not kv[0][0].startswith("control"), kv[0])):
        values = [100 * r["miou"] for r in group]
        mean, std = mean_std(values)
        overrides = " ".join(SETTINGS[setting][1] if setting in SETTINGS else group[0]["overrides"]) or "-"
        diff = paired_difference(by_seed[(setting, steps)], by_seed[best]) if best and not setting.startswith(
            "control") else None
        versus = f"{diff['mean']:+.1f} [{diff['low']:+.1f}, {diff['high']:+.1f}]" if diff else "-"
        lines.append(f"| {setting} | {overrides} | {steps} | {len(values)} | {mean:.1f} +- "
                     f"{std:.1f} | {min(values):.1f} - {max(values):.1f} | {versus} | "
                     f"{statistics.mean(r['pretrain_s'] for r in group):.0f} | {group[-1]['date']} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], out: Path) -> Path | None:
    """Monitor probe mIoU against steps, mean over seeds with min-max bands, one line per curve setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        for record in r.get("curve", []):
            curves.setdefault(r["setting"].removeprefix("curve_"), {}).setdefault(record["step"], []).append(
                100 * record["monitor/probe_miou"])
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, by_step in sorted(curves.items()):
        steps = sorted(by_step)
        means = [statistics.fmean(by_step[s]) for s in steps]
        line, = ax.plot(steps, means, marker="o", ms=3, label=f"{name} ({len(by_step[steps[-1]])} seeds)")
        ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("pre-training step (batch 32)")
    ax.set_ylabel("monitor probe mIoU (64 held-out scenes)")
    ax.set_title("Learning curves on the demo settings (step 0 = untrained start)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_table() -> None:
    table = summarise(read_rows())
    (RESULTS / "short_schedules.md").write_text(table + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["control", "control_zero", "pixpro", "pixpro_zero"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="pre-training steps per run (batch 32)")
    parser.add_argument("--list", action="store_true", help="print the known settings and exit")
    parser.add_argument("--table", action="store_true", help="only rewrite the markdown table from the rows")
    parser.add_argument("--plot", type=Path, default=None, help="draw the learning curves into this PNG and exit")
    args = parser.parse_args()
    if args.list:
        for name, (preset, overrides) in SETTINGS.items():
            print(f"{name:24s} {preset:24s} {' '.join(overrides)}")
        return
    if args.table:
        write_table()
        return
    if args.plot is not None:
        print(plot_curves(read_rows(), args.plot) or "no curve rows yet")
        return
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; see --list")
    done = {row_key(r["setting"], r["seed"], r["steps"]) for r in read_rows()
            if r.get("version") == STUDY_VERSION and r["setting"] in SETTINGS}
    workdir = Path(tempfile.mkdtemp(prefix="short_schedules_"))
    info = machine()
    try:
        for seed in args.seeds:  # seeds outermost: every setting gets a first seed before any gets a third
            for setting in args.settings:
                key = row_key(setting, seed, args.steps)
                if key in done:
                    continue
                row = measure(setting, seed, args.steps, workdir)
                row.update(key=key, version=STUDY_VERSION, date=info["date"], threads=info["threads"], commit=git_commit())
                append_jsonl(JSONL, row)
                done.add(key)
                print(f"{setting} seed {seed}: mIoU {100 * row['miou']:.1f} ({row['pretrain_s']:.0f} s pre-train, "
                      f"{row['probe_s']:.0f} s probe)", flush=True)
                write_table()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
