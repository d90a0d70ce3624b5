"""Pre-training step time, images/s, peak memory and the share of the dense part (matching + PPM + loss).

Cases (each in its own process): PixPro ResNet-50 224 px batch 32 and the ResNet-18 demo settings, in fp32
(NCHW and channels_last) and bf16 autocast with channels_last, beside (a) the official release's step
(``reference_pixpro.py``) and (b) the bare backbone work of the same step (two views: online forward +
backward, momentum forward). DenseCL and the PixCon variants run from their presets (``<method>_r50`` /
``<method>_r18_demo``: their heads, queues and optimiser) on the same batches; their "dense part" is the matching
(+ SR weighting for pixcon_sr) of both directions, timed on its own, as a share of the step (goal: <= 5%).
GPU cases run when CUDA is available.

    python benchmarks/pretrain_step.py            # all cases, writes benchmarks/results/pretrain_step.{json,md}
    python benchmarks/pretrain_step.py --quick    # fewer repeats, no emulated-bf16 R50 case
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, peak_rss_mib, run_isolated, time_it, write_results  # noqa: E402

SETTINGS = {
    "r50": dict(backbone="resnet50", size=224, batch=32, hidden=4096, dim=256, optimizer="lars"),
    "r18-demo": dict(backbone="resnet18", size=96, batch=32, hidden=1024, dim=128, optimizer="lars"),
}


def make_batch(setting: dict, device: torch.device, channels_last: bool) -> dict:
    b, s = setting["batch"], setting["size"]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    lo = torch.rand(b, 2, generator=g) * 0.4
    box1 = torch.cat([lo, lo + 0.4 + torch.rand(b, 2, generator=g) * 0.2], 1)
    box2 = torch.cat([lo + 0.1, lo + 0.5], 1)
    return {"view1": torch.randn(b, 3, s, s, generator=g).to(device).contiguous(memory_format=fmt),
            "view2": torch.randn(b, 3, s, s, generator=g).to(device).contiguous(memory_format=fmt),
            "box1": box1.to(device), "box2": box2.to(device),
            "flip1": (torch.rand(b, generator=g) < 0.5).to(device), "flip2": (torch.rand(b, generator=g) < 0.5).to(device)}


def ours(setting: dict, device: torch.device, dtype: str, channels_last: bool, repeats: int) -> dict:
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.methods import build_method
    from pixelssl.train.optim import build_optimizer

    cfg = load_config(PretrainConfig, overrides=[
        f"model.backbone={setting['backbone']}", f"model.proj_hidden_dim={setting['hidden']}",
        f"model.proj_dim={setting['dim']}"])
    model = build_method(cfg).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = build_optimizer(model, setting["optimizer"], 0.1, 1e-5, 0.9)
    batch = make_batch(setting, device, channels_last)
    amp = dtype == "bf16"

    timing = time_training_step(model, opt, batch, device, amp, repeats)
    timing["dense"] = dense_part(model, batch, device, amp, repeats=20)
    return timing


def time_training_step(model, opt, batch: dict, device: torch.device, amp: bool, repeats: int) -> dict:
    """Time whole training steps: teacher update, forward (autocast when ``amp``), backward, optimiser step."""
    def step():
        model.momentum_update(0.995)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return time_it(step, device, repeats)


def dense_part(model, batch: dict, device: torch.device, amp: bool, repeats: int) -> dict:
    """Matching + PPM + loss, forward and backward, on projector outputs of the step's shape."""
    from pixelssl.dense.propagation import pixel_propagation
    from pixelssl.losses import pixpro_consistency

    with torch.no_grad():
        feats = model.backbone(batch["view1"][:2])
    b = batch["view1"].shape[0]
    h, w = feats.shape[-2:]
    dim = model.projector[-1].out_channels
    proj = [torch.randn(b, dim, h, w, device=device, requires_grad=True) for _ in range(2)]
    keys = [torch.nn.functional.normalize(torch.randn(b, dim, h, w, device=device), dim=1) for _ in range(2)]

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pos = model.coordinate_positives(batch, (h, w), 0.7)
            props = [pixel_propagation(p, model.value_transform(p), 2.0) for p in proj]
            loss = (pixpro_consistency(props[0].flatten(2), keys[1].flatten(2), pos)
                    + pixpro_consistency(props[1].flatten(2), keys[0].flatten(2), pos.transpose(1, 2)))
        loss.backward()

    return time_it(run, device, repeats, warmup=2)


def dense_method(name: str, setting: dict, device: torch.device, dtype: str, channels_last: bool, repeats: int) -> dict:
    """One training step of DenseCL / PixCon-* with its preset's heads, queues and optimiser."""
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.methods import build_method
    from pixelssl.train.optim import build_optimizer

    preset = f"{name}_r50" if setting["backbone"] == "resnet50" else f"{name}_r18_demo"
    cfg = load_config(PretrainConfig, preset, [f"model.backbone={setting['backbone']}"])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_method(cfg).to(device).to(memory_format=fmt).train()
    opt = build_optimizer(model, cfg.train.optimizer, 0.1, cfg.train.weight_decay, 0.9)
    batch = make_batch(setting, device, channels_last)
    amp = dtype == "bf16"

    timing = time_training_step(model, opt, batch, device, amp, repeats)
    timing["dense"] = matching_part(model, batch, device, amp, repeats=20)
    return timing


def matching_part(model, batch: dict, device: torch.device, amp: bool, repeats: int) -> dict:
    """The step's matching (+ SR weights) of every direction, without gradient as in the step, on C5-shaped maps."""
    with torch.no_grad():
        shape = model.backbone(batch["view1"][:2]).shape[1:]
    b = batch["view1"].shape[0]
    dtype = torch.bfloat16 if amp else torch.float32
    feats = [torch.randn(b, *shape, device=device, dtype=dtype) for _ in range(2)]
    directions = [(0, 1), (1, 0)] if model.symmetric else [(0, 1)]

    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for a, k in directions:
                model.match(feats[a], feats[k], batch, a + 1, k + 1)

    return time_it(run, device, repeats, warmup=2)


def bare_backbone(setting: dict, device: torch.device, dtype: str, channels_last: bool, repeats: int) -> dict:
    from pixelssl.models.backbones import build_backbone

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    online = build_backbone(setting["backbone"]).to(device).to(memory_format=fmt).train()
    teacher = build_backbone(setting["backbone"]).to(device).to(memory_format=fmt).train()
    batch = make_batch(setting, device, channels_last)
    amp = dtype == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = online(batch["view1"]).float().mean() + online(batch["view2"]).float().mean()
            with torch.no_grad():
                teacher(batch["view1"]), teacher(batch["view2"])
        out.backward()

    return time_it(step, device, repeats)


def official(setting: dict, device: torch.device, dtype: str, channels_last: bool, repeats: int) -> dict:
    from reference_pixpro import ReferenceLARS, ReferencePixPro

    if setting["backbone"] != "resnet50":
        raise SystemExit("the reference step exists for resnet50 only")
    model = ReferencePixPro(steps=1000).to(device).train()
    opt = ReferenceLARS(model, lr=0.1)
    batch = make_batch(setting, device, channels_last=False)

    def step():
        loss = model(batch["view1"], batch["view2"], batch["box1"], batch["box2"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return time_it(step, device, repeats)


DENSE_METHODS = ("densecl", "pixcon_coord", "pixcon_sim", "pixcon_sr")
KINDS = {"ours": ours, "bare": bare_backbone, "official": official,
         **{name: partial(dense_method, name) for name in DENSE_METHODS}}


def run_case(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    device = torch.device(args.device)
    setting = SETTINGS[args.setting]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = KINDS[args.kind](setting, device, args.dtype, args.layout == "cl", args.repeats)
    result["peak_rss_mib"] = peak_rss_mib()
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["images_per_s"] = setting["batch"] / result["median_s"]
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", nargs=5, metavar=("SETTING", "KIND", "DEVICE", "DTYPE", "LAYOUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS),
                        help="which settings to run (r50 cases take minutes each on a 2-core CPU)")
    args = parser.parse_args()
    if args.case:
        args.setting, args.kind, args.device, args.dtype, args.layout = args.case
        run_case(args)
        return

    info = machine()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = []
    for device in devices:
        for setting in args.settings:
            if setting == "r50":
                cases.append((setting, "official", device, "fp32", "nchw"))
            cases += [(setting, "bare", device, "fp32", "cl"), (setting, "ours", device, "fp32", "nchw"),
                      (setting, "ours", device, "fp32", "cl")]
            slow_bf16 = device == "cpu" and not info["native_bf16"]
            if not (args.quick and slow_bf16 and setting == "r50"):
                cases += [(setting, "bare", device, "bf16", "cl"), (setting, "ours", device, "bf16", "cl")]
            cases += [(setting, name, device, "fp32", "cl") for name in DENSE_METHODS]
            if not (args.quick and slow_bf16 and setting == "r50"):
                cases += [(setting, name, device, "bf16", "cl") for name in DENSE_METHODS]
    rows = []
    for case in cases:
        # Emulated bf16 on CPUs without native support is ~10x slower: one timed step is enough to show it.
        repeats = 1 if (case[2] == "cpu" and case[3] == "bf16" and not info["native_bf16"]) else \
            (1 if args.quick else args.repeats)
        print(f"running {' '.join(case)} ...", file=sys.stderr, flush=True)
        result = run_isolated(Path(__file__), ["--case", *case, "--repeats", str(repeats)])
        rows.append({"setting": case[0], "kind": case[1], "device": case[2], "dtype": case[3], "layout": case[4],
                     **result})
    rows = kept_rows(args.settings, info) + rows
    write_results("pretrain_step", {"machine": info, "rows": rows}, table(rows, info))


def kept_rows(settings: list[str], info: dict) -> list[dict]:
    """Rows of settings not run this time, from an earlier run on the same machine, so a partial run adds to the table."""
    previous = RESULTS / "pretrain_step.json"
    if not previous.exists():
        return []
    old = json.loads(previous.read_text())
    same_machine = all(old.get("machine", {}).get(k) == info.get(k) for k in ("cores", "cpu_capability", "gpu"))
    return [r for r in old.get("rows", []) if same_machine and r["setting"] not in settings]


def table(rows: list[dict], info: dict) -> str:
    def find(setting, kind, device, dtype, layout):
        for r in rows:
            if (r["setting"], r["kind"], r["device"], r["dtype"], r["layout"]) == (setting, kind, device, dtype, layout):
                return r
        return None

    lines = [f"Pre-training step (ours = PixPro; DenseCL / PixCon by name), measured {info['date']} on {info['cores']} cores "
             f"({info['cpu_capability']}, native bf16: {info['native_bf16']})" + (f", {info['gpu']}" if "gpu" in info else ""),
             "",
             "| setting | device | step | precision / layout | step time (s) | img/s | dense part | vs official "
             "| vs bare backbone | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['setting']} | {r['device']} | {r['kind']} | {r['dtype']} {r['layout']} "
                         f"| error: {r['error']} | | | | | |")
            continue
        ref = find(r["setting"], "official", r["device"], "fp32", "nchw")
        bare = find(r["setting"], "bare", r["device"], r["dtype"], "cl")
        dense = f"{100 * r['dense']['median_s'] / r['median_s']:.1f}%" if "dense" in r else ""
        vs_ref = f"{r['median_s'] / ref['median_s']:.2f}x" if ref and "median_s" in ref and r["kind"] != "official" else ""
        ours = r["kind"] in ("ours", *DENSE_METHODS)
        vs_bare = f"{bare['median_s'] / r['median_s']:.2f}" if bare and "median_s" in bare and ours else ""
        lines.append(f"| {r['setting']} | {r['device']} | {r['kind']} | {r['dtype']} {r['layout']} | {r['median_s']:.2f} "
                     f"| {r['images_per_s']:.1f} | {dense} | {vs_ref} | {vs_bare} | {r['peak_rss_mib']:.0f} |")
    lines.append("")
    lines.append("dense part = matching + PPM + loss (forward + backward) as a share of the step (DenseCL / PixCon rows: "
                 "matching, plus SR weighting for pixcon_sr, of both directions); vs official = step time "
                 "divided by the official release's fp32 step; vs bare backbone = bare backbone time / our step time "
                 "(1.0 = nothing but the backbone).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
