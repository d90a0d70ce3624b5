"""InfoNCE against a 65,536-entry queue, forward + backward, side by side: the textbook form (cross-entropy over
the concatenated [positive, queue] logits divided by t) and ``pixelssl.losses.info_nce`` (one logits buffer
turned into exponentials in place) -> results/queue_loss.{json,md}.

Rows are the dense term of DenseCL / PixCon (every 7x7 cell of a batch is a query; batch 2 and 8 on the CPU, 128
on CUDA) and MoCo's global term. Both forms compute the same loss (tested to 1e-12 in fp64); what differs is how
many (queries x 65,536) buffers they allocate and sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from pixelssl.losses import info_nce  # noqa: E402

QUEUE, DIM, T = 65536, 128, 0.2


def textbook(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
    logits = torch.cat(((query * key).sum(1, keepdim=True), query @ queue.t()), dim=1) / T
    return F.cross_entropy(logits, torch.zeros(query.shape[0], dtype=torch.long, device=query.device))


def case(rows: int, device: torch.device, repeats: int) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    query = F.normalize(torch.randn(rows, DIM, device=device, generator=g), dim=1).requires_grad_()
    key = F.normalize(torch.randn(rows, DIM, device=device, generator=g), dim=1)
    queue = F.normalize(torch.randn(QUEUE, DIM, device=device, generator=g), dim=1)
    result = {"queries": rows}
    for name, loss_fn in (("textbook", textbook), ("pixelssl", lambda q, k, n: info_nce(q, k, n, T))):
        def step(loss_fn=loss_fn) -> None:
            loss_fn(query, key, queue).backward()
            query.grad = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result[f"{name}_ms"] = common.time_it(step, device, repeats)["median_s"] * 1e3
        if device.type == "cuda":  # the (queries x 65,536) buffers dominate: one per form is the difference
            result[f"{name}_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["speedup"] = result["textbook_ms"] / result["pixelssl_ms"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    cases = [("cpu", 2 * 49, "DenseCL/PixCon dense, batch 2"), ("cpu", 8 * 49, "DenseCL/PixCon dense, batch 8"),
             ("cpu", 256, "MoCo global, batch 256")]
    if torch.cuda.is_available():
        cases += [("cuda", 128 * 49, "DenseCL/PixCon dense, batch 128"), ("cuda", 256, "MoCo global, batch 256")]
    rows = [{"device": device, "what": what, **case(n, torch.device(device), repeats)} for device, n, what in cases]
    info = common.machine()
    lines = [f"InfoNCE against a {QUEUE:,}-entry queue (dim {DIM}), forward + backward, median ms, measured "
             f"{info['date']} on {info['cores']} cores ({info['cpu_capability']}, {info['threads']} threads)"
             + (f", {info['gpu']}" if "gpu" in info else ""), "",
             "| device | case | queries | textbook (ms) | pixelssl (ms) | speed-up |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['device']} | {r['what']} | {r['queries']} | {r['textbook_ms']:.1f} | {r['pixelssl_ms']:.1f} "
              f"| {r['speedup']:.2f}x |" for r in rows]
    lines += [f"\nCUDA peak memory, {r['what']}: textbook {r['textbook_peak_mib']:.0f} MiB, pixelssl "
              f"{r['pixelssl_peak_mib']:.0f} MiB" for r in rows if "textbook_peak_mib" in r]
    common.write_results("queue_loss", {"machine": info, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
    main()
