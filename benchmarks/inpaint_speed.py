"""Contextual attention and full-image fill speed, each figure beside its floor measured in the same run.

Floors are analytic FLOPs divided by this machine's rates, measured in the same process just before each case at
the same precision: a square GEMM for the attention layer's two patch products, a representative 3x3 convolution
(128 -> 128 channels, channels_last, the generator's dominant shape) for the generator's convolutions. Cases
(each in its own process, so the peak memory figure is its own):

- the layer at batch 8 on 64x64x128 features (rate 2, 3x3 patches, fusion on) against the naive per-sample
  implementation the tests check it against (``tests/inpaint/naive_reference.py``), and at the 512 px fill's
  size (128x128x128 features, where it runs chunked);
- a full 512 x 512 fill with the release-sized generator (cnum 32), with and without contextual attention.

Both in fp32 and bf16 (autocast for the fill). On a CPU without native bf16 (no AVX512-BF16 / AMX) bf16 is
emulated and hundreds of times slower, so its cases run at reduced sizes (noted in the table) to finish in
minutes. GPU cases run when CUDA is available. The output is the exact algorithm: no patch subsampling.

    python benchmarks/inpaint_speed.py            # writes benchmarks/results/inpaint_speed.{json,md}
    python benchmarks/inpaint_speed.py --quick    # fewer repeats, small bf16 cases only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "inpaint"))
from common import machine, peak_rss_mib, run_isolated, sync, time_it, write_results  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
FULL = {"layer": (8, 128, 64), "layer_at_fill": (1, 128, 128), "fill": 512, "gemm": 2048, "conv": 128}
REDUCED = {"layer": (1, 128, 32), "layer_at_fill": (1, 128, 32), "fill": 64, "gemm": 256, "conv": 32}  # emulated bf16


def attention_flops(batch: int, channels: int, height: int, width: int, ksize: int = 3, rate: int = 2) -> float:
    """DeepFill v1 layer: scores (P x L x C*k*k) and pasting (P x L x C*(2 rate)^2) multiply-adds, times 2."""
    cells = (-(-height // rate)) * (-(-width // rate))
    return 2.0 * batch * cells * cells * channels * (ksize * ksize + (2 * rate) ** 2)


def conv_flops(model: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """2 x multiply-adds of every Conv2d / Linear in one forward pass (counted with hooks)."""
    total = [0.0]

    def hook(module, args, out):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += 2.0 * out.numel() * k
        else:
            total[0] += 2.0 * out.numel() * module.in_features

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        model(*inputs)
    for h in handles:
        h.remove()
    return total[0]


def sizes(device: str, dtype: str) -> dict:
    from pixelssl.engine.runtime import cpu_has_native_bf16

    return REDUCED if (device == "cpu" and dtype == "bf16" and not cpu_has_native_bf16()) else FULL


# ----------------------------------------------------------------------------------------------- cases
def case_rates(device: torch.device, dtype: torch.dtype, s: dict, repeats: int) -> dict:
    """GFLOP/s of a square GEMM and of a 3x3 128 -> 128 convolution (channels_last)."""
    n = s["gemm"]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    gemm = time_it(lambda: a @ b, device, repeats)
    c = s["conv"]
    x = torch.randn(1, 128, c, c, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv = time_it(lambda: F.conv2d(x, w, padding=1), device, repeats)
    return {"gemm_gflops": 2 * n ** 3 / gemm["min_s"] / 1e9,
            "conv_gflops": 2 * c * c * 128 * 128 * 9 / conv["min_s"] / 1e9, "gemm_size": n, "conv_size": c}


def case_layer(device: torch.device, dtype: torch.dtype, impl: str, shape: tuple[int, int, int], repeats: int) -> dict:
    """Contextual attention on (B, C, S, S) ReLU features with a centred square hole of a quarter of the area."""
    from naive_reference import naive_contextual_attention

    from pixelssl.inpaint.contextual_attention import contextual_attention

    batch, channels, size = shape
    g = torch.Generator().manual_seed(0)
    f = torch.randn(batch, channels, size, size, generator=g).relu().to(device, dtype)
    f = f.contiguous(memory_format=torch.channels_last)
    mask = torch.zeros(1, 1, size, size, device=device, dtype=dtype)
    mask[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    fn = contextual_attention if impl == "ours" else naive_contextual_attention
    with torch.no_grad():
        result = time_it(lambda: fn(f, f, mask), device, repeats)
    result["flops"] = attention_flops(batch, channels, size, size)
    result["shape"] = list(shape)
    return result


def case_fill(device: torch.device, dtype: torch.dtype, model: str, size: int, repeats: int) -> dict:
    """One size x size fill (batch 1) with the release-sized generator, hole = a centred quarter-area square."""
    from pixelssl.inpaint.fill import fill_images
    from pixelssl.inpaint.networks import InpaintGenerator

    torch.manual_seed(0)
    generator = InpaintGenerator(cnum=32, use_contextual_attention=model == "full").to(device).eval()
    generator = generator.to(memory_format=torch.channels_last)
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    hole = torch.zeros(1, 1, size, size, dtype=torch.bool)
    hole[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = True
    use_autocast = dtype != torch.float32

    def fill():
        with torch.autocast(device.type, dtype=dtype, enabled=use_autocast):
            return fill_images(generator, image, hole)

    result = time_it(fill, device, repeats)
    x = torch.zeros(1, 3, size, size, device=device)
    m = hole.float().to(device)
    result["conv_flops"] = conv_flops(generator, x, m)
    result["attention_flops"] = attention_flops(1, 4 * 32, size // 4, size // 4) if model == "full" else 0.0
    result["size"] = size
    return result


def run_case(args: argparse.Namespace) -> None:
    kind, device_name, dtype_name, variant = args.case
    device, dtype = torch.device(device_name), DTYPES[dtype_name]
    s = sizes(device_name, dtype_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = case_rates(device, dtype, s, args.repeats)  # side by side with the case, same process and precision
    before = peak_rss_mib()
    if kind == "layer":
        impl, where = variant.split("@")
        result = case_layer(device, dtype, impl, s["layer" if where == "bench" else "layer_at_fill"], args.repeats)
    else:
        result = case_fill(device, dtype, variant, s["fill"], args.repeats)
    sync(device)
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_rss_above_setup_mib"] = result["peak_rss_mib"] - before
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["reduced_size"] = s is REDUCED
    print(json.dumps({**result, **rates}))


# ------------------------------------------------------------------------------------------------ report
def summarise(rows: list[dict]) -> list[dict]:
    """Attach floors (FLOPs / rates measured in the same process at the same precision) and ratios to each row."""
    naive = {(r["device"], r["dtype"], r["variant"].split("@")[1]): r for r in rows
             if r["kind"] == "layer" and r["variant"].startswith("naive") and "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        gemm, conv = r["gemm_gflops"] * 1e9, r["conv_gflops"] * 1e9
        if r["kind"] == "layer":
            r["floor_s"] = r["flops"] / gemm
            ref = naive.get((r["device"], r["dtype"], r["variant"].split("@")[1]))
            if r["variant"].startswith("ours") and ref:
                r["speedup_vs_naive"] = ref["median_s"] / r["median_s"]
        else:
            r["flops"] = r["conv_flops"] + r["attention_flops"]
            r["floor_s"] = r["conv_flops"] / conv + r["attention_flops"] / gemm
            r["gemm_floor_s"] = r["flops"] / gemm
        r["vs_floor"] = r["median_s"] / r["floor_s"]
    return rows


def table(rows: list[dict], info: dict) -> str:
    lines = [f"Contextual attention inpainting speed, measured {info['date']} on {info['cores']} cores "
             f"({info['cpu_capability']}, native bf16: {info['native_bf16']}, {info['threads']} threads)"
             + (f", {info['gpu']}" if "gpu" in info else ""), "",
             "| case | device | precision | size | median (s) | floor (s) | vs floor | vs naive | GFLOP | GEMM / conv "
             "GFLOP/s | peak RSS (MiB) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} {r['variant']} | {r['device']} | {r['dtype']} | | error: {r['error']} "
                         "| | | | | | |")
            continue
        size = ("x".join(map(str, r["shape"])) if r["kind"] == "layer" else f"{r['size']}x{r['size']}")
        size += " (reduced: emulated bf16)" if r["reduced_size"] else ""
        name = {"ours@bench": "layer (ours)", "naive@bench": "layer (naive per-sample)",
                "ours@fill": "layer at 512px-fill size", "naive@fill": "naive at 512px-fill size",
                "full": "fill (generator + CA)", "noca": "fill, no CA (ablation)"}[r["variant"]]
        vs_naive = f"{r['speedup_vs_naive']:.2f}x faster" if "speedup_vs_naive" in r else ""
        floor = f"{r['floor_s']:.3f}" if "floor_s" in r else ""
        vs_floor = f"{r['vs_floor']:.2f}x" if "vs_floor" in r else ""
        lines.append(f"| {name} | {r['device']} | {r['dtype']} | {size} | {r['median_s']:.3f} | {floor} | {vs_floor} "
                     f"| {vs_naive} | {r['flops'] / 1e9:.1f} | {r['gemm_gflops']:.1f} / {r['conv_gflops']:.1f} "
                     f"| {r['peak_rss_above_setup_mib']:.0f} |")
    lines += ["", "floor = analytic FLOPs of the release's formulation (scores: P x L x 9C, transposed convolution: "
              "P x L x 16C multiply-adds; generator convolutions counted by hooks) / rates measured in the same "
              "process just before the case, at that precision (GEMM: square n x n; conv: 3x3 128 -> 128 "
              "channels_last). Our layer folds the transposed convolution's four overlapping quarters into the "
              "attention weights, so its pasting product does 4x fewer multiply-adds than that count (same sums, no "
              "subsampling) and can beat the floor. Layer sizes are B x C x S (S x S features); fills are batch 1. "
              "Peak RSS = growth of the process high-water mark during the case. The machine was shared while "
              "measuring: re-measure on a quiet one; the ratios measured side by side are the robust figures."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat; skip the slow emulated-bf16 fills")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--case", nargs=4, metavar=("KIND", "DEVICE", "DTYPE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        run_case(args)
        return
    info = machine()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = []
    for device in devices:
        for dtype in ("fp32", "bf16"):
            emulated = device == "cpu" and dtype == "bf16" and not info["native_bf16"]
            cases += [("layer", device, dtype, "ours@bench"),
                      ("layer", device, dtype, "naive@bench"), ("layer", device, dtype, "ours@fill")]
            if not (args.quick and emulated):
                cases += [("fill", device, dtype, "full"), ("fill", device, dtype, "noca")]
    rows = []
    for case in cases:
        emulated = case[1] == "cpu" and case[2] == "bf16" and not info["native_bf16"]
        repeats = 1 if (args.quick or emulated) else args.repeats
        print(f"running {' '.join(case)} ...", file=sys.stderr, flush=True)
        extra = ["--threads", str(args.threads)] if args.threads else []
        result = run_isolated(Path(__file__), ["--case", *case, "--repeats", str(repeats), *extra])
        rows.append({"kind": case[0], "device": case[1], "dtype": case[2], "variant": case[3], **result})
    rows = summarise(rows)
    write_results("inpaint_speed", {"machine": info, "rows": rows}, table(rows, info), quick=args.quick)


if __name__ == "__main__":
    main()
