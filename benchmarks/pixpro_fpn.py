"""PixPro on FCOS's FPN: step time of pixpro_fpn vs pixpro at the demo settings, and the chunked matcher's memory.

Step: each method's `*_r18_demo` preset (ResNet-18, 80 px views, batch 32, LARS), one real batch from the synthetic
scenes, forward + backward + optimiser step (data loading excluded), median of timed steps after a warm-up; each
method runs twice, alternating, and the faster run is kept.
Matcher: PPM + PixPro loss, forward and backward, on one 56x56 level (N = 3136 cells, 256 channels, batch 2), with
`method.match_chunk_mib` = 0 (unchunked) and smaller budgets; peak RSS growth of a fresh process per case
(glibc's mmap threshold fixed at 1 MiB so that RSS follows live memory).

    python benchmarks/pixpro_fpn.py            # all cases, writes results/pixpro_fpn.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, peak_rss_mib, run_isolated, time_it, write_results  # noqa: E402

PRESETS = {"pixpro": "pixpro_r18_demo", "pixpro_fpn": "pixpro_fpn_r18_demo"}
BUDGETS = [0.0, 64.0, 16.0]
LEVEL, BATCH, CHANNELS = (56, 56), 2, 256


def step_case(method_name: str, repeats: int) -> dict:
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.data.loader import build_pretrain_loader, build_two_view_dataset
    from pixelssl.methods import build_method
    from pixelssl.train.optim import build_optimizer

    cfg = load_config(PretrainConfig, PRESETS[method_name], ["data.num_workers=0"])
    torch.manual_seed(0)
    method = build_method(cfg).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(method, cfg.train.optimizer, 0.1, cfg.train.weight_decay, cfg.train.sgd_momentum)
    loader = build_pretrain_loader(build_two_view_dataset(cfg.data, 0), cfg.train.batch_size, 0, 0, 1, 0)
    batch = next(iter(loader))
    batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and not k.startswith("photo")}

    def step() -> None:
        method.momentum_update(0.99)
        loss = method(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    timing = time_it(step, torch.device("cpu"), repeats)
    return {"step_s": timing["median_s"], "img_per_s": cfg.train.batch_size / timing["median_s"],
            "levels": list(method.level_names), "peak_rss_mib": peak_rss_mib()}


def matcher_case(budget: float) -> dict:
    from pixelssl.dense.chunked import CellPairs, chunked_consistency, chunked_pixel_propagation

    g = torch.Generator().manual_seed(0)
    n = LEVEL[0] * LEVEL[1]
    batch = {"box1": torch.tensor([[0.0, 0.0, 0.7, 0.8]] * BATCH), "box2": torch.tensor([[0.2, 0.1, 1.0, 1.0]] * BATCH),
             "flip1": torch.zeros(BATCH, dtype=torch.bool), "flip2": torch.ones(BATCH, dtype=torch.bool)}
    pairs = CellPairs.of_views(batch, LEVEL, LEVEL, 0.7)
    feats = torch.randn(BATCH, CHANNELS, *LEVEL, generator=g).requires_grad_()
    key = torch.nn.functional.normalize(torch.randn(BATCH, CHANNELS, n, generator=g), dim=1)
    before = peak_rss_mib()
    start = time.perf_counter()
    y = chunked_pixel_propagation(feats, feats * 2, 2.0, budget)
    loss, _ = chunked_consistency(y.flatten(2), key, pairs, budget)
    loss.backward()
    return {"budget_mib": budget, "seconds": time.perf_counter() - start, "loss": float(loss.detach()),
            "peak_growth_mib": peak_rss_mib() - before, "nxn_block_mib": BATCH * n * n * 4 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", nargs="+", default=None, help="internal: step METHOD | matcher BUDGET")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.case:
        kind, value = args.case
        torch.set_num_threads(1)
        print(json.dumps(step_case(value, args.repeats) if kind == "step" else matcher_case(float(value))))
        return
    torch.set_num_threads(1)
    info = machine()
    # Alternate the methods and keep each one's faster run: on a shared machine load moves step times by +-50%.
    runs = [(m, run_isolated(Path(__file__), ["--case", "step", m, "--repeats", str(args.repeats)]))
            for _ in range(2) for m in PRESETS]
    steps = {m: min((r for name, r in runs if name == m), key=lambda r: r.get("step_s", float("inf"))) for m in PRESETS}
    # glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in the heap, so peak RSS would follow
    # fragmentation rather than live memory; a fixed 1 MiB threshold returns every large block to the OS when freed.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**20))
    matcher = [run_isolated(Path(__file__), ["--case", "matcher", str(b)]) for b in BUDGETS]
    write_results("pixpro_fpn", {"machine": info, "steps": steps, "matcher": matcher}, table(steps, matcher, info))


def table(steps: dict, matcher: list[dict], info: dict) -> str:
    lines = [f"PixPro vs PixPro-FPN step at the demo settings (ResNet-18, 80 px, batch 32, 1 thread), and the chunked "
             f"matcher on a {LEVEL[0]}x{LEVEL[1]} level; measured {info['date']} on {info['cores']} cores "
             f"({info['cpu_capability']})", "",
             "| method | levels | step (s) | img/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for name, r in steps.items():
        lines.append(f"| {name} | {', '.join(r.get('levels', []))} | {r.get('step_s', float('nan')):.2f} | "
                     f"{r.get('img_per_s', float('nan')):.1f} | {r.get('peak_rss_mib', float('nan')):.0f} |")
    lines += ["", "| match_chunk_mib | PPM + loss fwd+bwd (s) | peak RSS growth (MiB) | one (B, N, N) fp32 block (MiB) "
                  "| loss |", "|---|---|---|---|---|"]
    for r in matcher:
        budget = "0 (unchunked)" if r.get("budget_mib") == 0 else f"{r.get('budget_mib', float('nan')):g}"
        lines.append(f"| {budget} | {r.get('seconds', float('nan')):.2f} | {r.get('peak_growth_mib', float('nan')):.0f} "
                     f"| {r.get('nxn_block_mib', float('nan')):.0f} | {r.get('loss', float('nan')):.6f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
