"""``pixelssl demo``: pre-train each method on the built-in synthetic scenes with the same budget, then
linear-probe every backbone (and a random-init control) on the same held-out scenes and print the table.

Everything is measured in the run; nothing is looked up. The budget is small enough for a 2-core CPU
(see README for the time it takes); ``--quick`` shrinks it to a smoke test whose numbers mean nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import torch

from pixelssl.config import PretrainConfig, load_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoBudget:
    steps: int  # pre-training steps per method (batch 32 of 80 px view pairs, demo_common.yaml)
    pretrain_images: int  # synthetic training scenes (unlabeled for pre-training)
    probe_train: int  # labeled scenes the probe is trained on
    probe_val: int  # held-out labeled scenes the probe is scored on
    probe_epochs: int
    # The probe reads 128 px scenes upsampled to this side: pre-training views magnify scenes 1-2x, and at
    # 128 px C5 is a 4x4 map that hides most of what pixel-level pre-training changes.
    probe_size: int = 256


# 100 steps: the most that fits `make demo` in 10 minutes on 2 cores (install included); at 60 steps no method
# beat random init on this probe, at 100 PixContrast does (README "The demo").
FULL = DemoBudget(steps=100, pretrain_images=2000, probe_train=300, probe_val=150, probe_epochs=30)
QUICK = DemoBudget(steps=3, pretrain_images=128, probe_train=32, probe_val=16, probe_epochs=2, probe_size=0)

# (row label, preset); every preset shares demo_common.yaml, so only the method differs.
METHODS = (("MoCo-v2", "moco_r18_demo"), ("PixContrast", "pixcontrast_r18_demo"), ("PixPro", "pixpro_r18_demo"))
# `pixelssl demo --methods all`: adds the PixCon family and DenseCL (about twice the time of the default).
ALL_METHODS = METHODS + (("DenseCL", "densecl_r18_demo"), ("PixCon-Coord", "pixcon_coord_r18_demo"),
                         ("PixCon-Sim", "pixcon_sim_r18_demo"), ("PixCon-SR", "pixcon_sr_r18_demo"))


def _probe(backbone: torch.nn.Module, budget: DemoBudget) -> dict:
    from pixelssl.data.synthetic import SyntheticScenes
    from pixelssl.evaluate.probe import ProbeConfig, linear_probe

    train = SyntheticScenes(budget.probe_train, split="train")
    val = SyntheticScenes(budget.probe_val, split="val")
    return linear_probe(backbone, train, val, ProbeConfig(epochs=budget.probe_epochs, image_size=budget.probe_size))


def untrained_controls(configs: list[PretrainConfig]) -> list[tuple[str, torch.nn.Module]]:
    """The untrained network each run starts from, once per initialisation in use: gains count against these, since
    the initialisation alone moves the probe (zero-init residual 27.7 vs default 23.6 at seed 0)."""
    from pixelssl.engine.runtime import seed_everything
    from pixelssl.models.backbones import build_backbone

    inits = [(cfg.model.backbone, bool(cfg.model.zero_init_residual), cfg.train.seed) for cfg in configs]
    controls, seen = [], set()
    for init in inits:
        if init in seen:
            continue
        seen.add(init)
        seed_everything(init[2])  # the backbone is the first thing a method draws from the RNG
        label = "random init" + (", zero-init residual" if init[1] else "")
        controls.append((label, build_backbone(init[0], zero_init_residual=init[1])))
    return controls


def control_row(label: str, backbone: torch.nn.Module, budget: DemoBudget) -> dict:
    metrics = _probe(backbone, budget)
    return {"method": label, "steps": 0, "pretrain_s": 0.0, "first_loss": None, "final_loss": None,
            "miou": metrics["miou"], "pixel_acc": metrics["pixel_acc"], "probe_s": metrics["timing"]["total_s"],
            "run": None}


def run_demo(output_dir: str | Path = "runs/demo", quick: bool = False,
             methods: tuple[tuple[str, str], ...] = METHODS, steps: int | None = None) -> list[dict]:
    """Pre-train + probe every method and the random-init control; returns the table rows (also saved).

    ``steps`` overrides the budget's pre-training steps (same for every method, so the comparison stays fair).
    """
    from pixelssl.models.backbones import build_backbone
    from pixelssl.train.loop import pretrain

    budget = QUICK if quick else FULL
    if steps is not None:
        if steps < 1:
            raise ValueError(f"demo: steps must be >= 1 (got {steps})")
        budget = replace(budget, steps=steps)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    configs = {label: load_config(PretrainConfig, preset, [
        f"run.output_dir={out}", f"run.name={preset.replace('_r18_demo', '')}", f"train.max_steps={budget.steps}",
        f"data.synthetic.num_images={budget.pretrain_images}", "train.checkpoint_every=1000000"])
        for label, preset in methods}
    rows = [control_row(label, backbone, budget) for label, backbone in untrained_controls(list(configs.values()))]
    trained: dict[str, torch.nn.Module] = {}  # run directory -> method, reused by the report (no reloading)
    for label, cfg in configs.items():
        shutil.rmtree(out / cfg.run.name, ignore_errors=True)  # the demo owns these run directories
        log.info("demo: pre-training %s for %d steps", label, budget.steps)
        result = pretrain(cfg)
        trained[str(result.run_dir)] = result.method
        metrics = _probe(build_backbone(cfg.model.backbone, str(result.backbone_path)), budget)
        rows.append({"method": label, "steps": budget.steps, "pretrain_s": result.seconds,
                     "first_loss": result.first_loss, "final_loss": result.final_loss, "miou": metrics["miou"],
                     "pixel_acc": metrics["pixel_acc"], "probe_s": metrics["timing"]["total_s"],
                     "run": str(result.run_dir)})
    total = time.perf_counter() - started
    summary = {"date": date.today().isoformat(), "budget": budget.__dict__, "seconds": total, "rows": rows,
               "threads": torch.get_num_threads()}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(rows, budget, total) + "\n")
    print_table(rows, budget, total, out)
    write_demo_report(out, summary, trained)
    return rows


def write_demo_report(out: Path, summary: dict, trained: dict[str, torch.nn.Module]) -> Path:
    """``report.html`` of the demo's runs (curves, the method table, figures), from the models in memory."""
    from pixelssl.report.html import write_report

    started = time.perf_counter()
    path = write_report(list(trained), out / "report.html", methods=trained, demo=summary,
                        title="pixelssl demo: dense pre-training methods compared")
    summary["report_s"] = round(time.perf_counter() - started, 2)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"report: {path.resolve()}  ({summary['report_s']:.1f} s)")
    return path


def markdown_table(rows: list[dict], budget: DemoBudget, seconds: float) -> str:
    lines = [f"Linear-probe mIoU on {budget.probe_val} held-out synthetic scenes (probe trained on {budget.probe_train}); "
             f"each method pre-trained {budget.steps} steps x batch 32 on 80 px views, ResNet-18; probe on C5 "
             f"at {budget.probe_size or 128} px; "
             f"measured {date.today().isoformat()}, {seconds / 60:.1f} min in total.",
             "",
             "| backbone | pre-train steps | pre-train time | loss (first -> last) | probe mIoU | pixel acc |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        loss = "" if r["first_loss"] is None else f"{r['first_loss']:.3f} -> {r['final_loss']:.3f}"
        lines.append(f"| {r['method']} | {r['steps']} | {r['pretrain_s']:.0f} s | {loss} | {100 * r['miou']:.1f} "
                     f"| {100 * r['pixel_acc']:.1f} |")
    return "\n".join(lines)


def print_table(rows: list[dict], budget: DemoBudget, seconds: float, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pixelssl demo: dense linear probe on held-out synthetic scenes ({seconds / 60:.1f} min)")
    for column in ("backbone", "pre-train steps", "pre-train time", "loss first -> last", "probe mIoU", "pixel acc"):
        table.add_column(column, justify="right" if column != "backbone" else "left")
    best = max(r["miou"] for r in rows)
    for r in rows:
        loss = "" if r["first_loss"] is None else f"{r['first_loss']:.3f} -> {r['final_loss']:.3f}"
        miou = f"{100 * r['miou']:.1f}"
        table.add_row(r["method"], str(r["steps"]), f"{r['pretrain_s']:.0f} s", loss,
                      f"[bold]{miou}[/bold]" if r["miou"] == best else miou, f"{100 * r['pixel_acc']:.1f}")
    console = Console(width=None if Console().is_terminal else 120)
    console.print(table)
    console.print(f"runs and results: {out.resolve()}  (results.md, results.json; `pixelssl info {out / 'pixpro'}`)")
