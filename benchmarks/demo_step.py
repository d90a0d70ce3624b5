"""Where the time of a demo pre-training step goes, and which speed switches pay, at the demo's own settings
(``pixpro_r18_demo``: ResNet-18, batch 32 of 80 px view pairs, LARS, the synthetic scenes, 2 threads).

Three parts, each case in its own process:

* **rates**: the machine's fp32 matmul rate (2048^3) and the convolution rate of ResNet-18 forward + backward at
  the step's shape (FLOPs counted by ``torch.utils.flop_counter``), eager and ``torch.compile``-d;
* **phases**: one PixPro step taken apart on a real batch: online backbone forward + backward of both views,
  teacher forward of both views, the whole step (heads, PPM, loss, optimiser, teacher update), and the data
  pipeline's time per batch in the main process;
* **runs**: a whole ``pretrain()`` run for each speed switch: the steady step time from the loop's own throughput
  windows after the first 5 steps (data pipeline included) and the start-up (wall time minus the steps). Switches
  are interleaved over ``--rounds`` rounds and the fastest round is kept, so a busy moment hurts every switch alike.

    python benchmarks/demo_step.py                 # writes benchmarks/results/demo_step.{json,md}
    python benchmarks/demo_step.py --quick         # 3 steps per run, one round: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, run_isolated, time_it, write_results  # noqa: E402

PRESET = "pixpro_r18_demo"
BATCH, SIZE = 32, 80
SKIP = 5  # first steps left out of the steady step time (first-call set-up, compilation)
# switch name -> overrides on top of the preset (the first is today's default path)
SWITCHES = {
    "default": [],
    "no loader worker": ["data.num_workers=0"],
    "NCHW layout": ["train.channels_last=false"],
    "torch.compile": ["train.compile=true"],
}
# with --baseline: the same computation as an earlier checkout's default (which had no zero-init residual switch)
AS_BEFORE = "default init"
AS_BEFORE_OVERRIDES = ["model.zero_init_residual=false"]


def _backbone_step_flops(net: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops()


def case_rates(repeats: int) -> dict:
    """Matmul peak and the ResNet-18 forward + backward convolution rate at the demo's shape."""
    from pixelssl.models.backbones import build_backbone

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul = time_it(lambda: a @ b, torch.device("cpu"), repeats=10, warmup=3)
    out = {"matmul_gflops": 2 * 2048**3 / matmul["min_s"] / 1e9}
    try:
        net = build_backbone("resnet18", zero_init_residual=True)
    except TypeError:  # an earlier checkout (--baseline) without the switch; the rate does not depend on it
        net = build_backbone("resnet18")
    net = net.to(memory_format=torch.channels_last).train()
    x = torch.randn(BATCH, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last)
    flops = _backbone_step_flops(net, x)
    for name, fn in (("eager", net), ("compiled", torch.compile(net))):
        started = time.perf_counter()
        fn(x).sum().backward()  # the compiled variant compiles here
        first = time.perf_counter() - started
        timed = time_it(lambda fn=fn: fn(x).sum().backward(), torch.device("cpu"), repeats, warmup=2)
        out[name] = {"fwd_bwd_s": timed["min_s"], "first_call_s": first, "gflops": flops / timed["min_s"] / 1e9}
        out[name]["fraction_of_matmul"] = out[name]["gflops"] / out["matmul_gflops"]
    out["fwd_bwd_gflop"] = flops / 1e9
    return out


def case_phases(repeats: int) -> dict:
    """One PixPro step taken apart: backbone passes, the whole step, and the data pipeline per batch."""
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.data.loader import build_pretrain_loader, build_two_view_dataset
    from pixelssl.methods import build_method
    from pixelssl.train.optim import build_optimizer

    cfg = load_config(PretrainConfig, PRESET, ["data.num_workers=0", "data.synthetic.num_images=256"])
    dataset = build_two_view_dataset(cfg.data, seed=0)
    loader = build_pretrain_loader(dataset, BATCH, seed=0, start_step=0, total_steps=repeats + 3, num_workers=0)
    batches = iter(loader)
    next(batches)
    data = time_it(lambda: next(batches), torch.device("cpu"), repeats=repeats, warmup=1)
    batch = {k: (v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v)
             for k, v in next(batches).items()}
    model = build_method(cfg).to(memory_format=torch.channels_last).train()
    opt = build_optimizer(model, cfg.train.optimizer, cfg.train.base_lr, cfg.train.weight_decay, 0.9)
    online, teacher = model.backbone, model.backbone_k

    def online_pass():
        (online(batch["view1"]).mean() + online(batch["view2"]).mean()).backward()

    def teacher_pass():
        with torch.no_grad():
            teacher(batch["view1"]), teacher(batch["view2"])

    def whole_step():
        model.momentum_update(0.99)
        loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cpu = torch.device("cpu")
    out = {"data_s": data["min_s"], "online_fwd_bwd_s": time_it(online_pass, cpu, repeats, warmup=1)["min_s"],
           "teacher_fwd_s": time_it(teacher_pass, cpu, repeats, warmup=1)["min_s"],
           "step_s": time_it(whole_step, cpu, repeats, warmup=1)["min_s"]}
    out["rest_s"] = out["step_s"] - out["online_fwd_bwd_s"] - out["teacher_fwd_s"]
    return out


def case_run(switch: str, steps: int) -> dict:
    """A real ``pretrain()`` run with one switch: its steady step time from the loop's own throughput windows
    (steps after the first ``SKIP``, data waits included) and its whole wall time (start-up included)."""
    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.train.loop import pretrain

    out = Path(tempfile.mkdtemp(prefix="demo_step_"))
    try:
        cfg = load_config(PretrainConfig, PRESET, [
            f"run.output_dir={out}", "run.name=run", f"train.max_steps={steps + SKIP}", "train.log_every=5",
            "train.checkpoint_every=1000000", "train.tensorboard=false", "train.progress=false",
            *(AS_BEFORE_OVERRIDES if switch == AS_BEFORE else SWITCHES[switch])])
        started = time.perf_counter()
        result = pretrain(cfg)
        wall = time.perf_counter() - started
        timed_steps = timed_s = 0.0
        previous = 0
        # read as plain JSON lines: an earlier checkout (--baseline) has no shared reader at today's module path
        lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
        for record in (json.loads(line) for line in lines if line.strip()):
            if "img_per_s" not in record:
                continue
            window = record["step"] - previous
            previous = record["step"]
            if record["step"] > SKIP:
                timed_steps += window
                timed_s += window * BATCH / record["img_per_s"]
        step_s = timed_s / timed_steps
        return {"step_s": step_s, "startup_s": wall - step_s * (steps + SKIP), "final_loss": result.final_loss}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def table(payload: dict) -> str:
    info, rates, phases = payload["machine"], payload["rates"], payload["phases"]
    lines = [f"Demo pre-training step (PixPro, ResNet-18, batch {BATCH} of {SIZE} px pairs), measured {info['date']} on "
             f"{info['cores']} cores ({info['cpu_capability']}), {info['threads']} threads", ""]
    if "error" not in rates:
        lines += [f"fp32 matmul: {rates['matmul_gflops']:.0f} GFLOP/s. ResNet-18 forward + backward at the step's shape: "
                  f"{rates['fwd_bwd_gflop']:.1f} GFLOP, eager {rates['eager']['gflops']:.0f} GFLOP/s "
                  f"({100 * rates['eager']['fraction_of_matmul']:.0f}% of matmul), compiled "
                  f"{rates['compiled']['gflops']:.0f} GFLOP/s ({100 * rates['compiled']['fraction_of_matmul']:.0f}%, "
                  f"first call {rates['compiled']['first_call_s']:.0f} s).", ""]
    if "error" not in phases:
        s = phases["step_s"]
        lines += ["| phase of one step | seconds | share |", "|---|---:|---:|"]
        for key, label in (("online_fwd_bwd_s", "online backbone, forward + backward, both views"),
                           ("teacher_fwd_s", "teacher backbone, forward, both views"),
                           ("rest_s", "heads, PPM, loss, optimiser, teacher update"),
                           ("step_s", "whole step (batch in memory)"),
                           ("data_s", "data pipeline, one batch in the main process")):
            lines.append(f"| {label} | {phases[key]:.3f} | {100 * phases[key] / s:.0f}% |")
        lines.append("")
    lines += [f"| switch | steady step (s) | vs default | start-up (s) | final loss ({payload['steps']} steps) |",
              "|---|---:|---:|---:|---:|"]
    base = payload["runs"]["default"].get("step_s")
    for name, r in payload["runs"].items():
        if "step_s" not in r:
            lines.append(f"| {name} | failed: {r.get('error', '?')} | | | |")
            continue
        lines.append(f"| {name} | {r['step_s']:.3f} | {base / r['step_s']:.2f}x | {r['startup_s']:.1f} | "
                     f"{r['final_loss']:.5f} |")
    lines += ["", f"steady step: the loop's own throughput over steps {SKIP + 1}-{SKIP + payload['steps']}, best of "
              "the rounds; start-up: the run's wall time minus its steps at that rate (process set-up, first steps, "
              "compilation)."]
    if "baseline" in payload:
        lines += ["", *before_after(payload)]
    return "\n".join(lines)


def before_after(payload: dict) -> list[str]:
    """Today's step against an earlier checkout's default, timed in the same interleaved rounds."""
    base = payload["baseline"]
    before = payload["runs"][f"before ({base['commit']})"]
    lines = [f"Before / after, same run: {base['commit']}'s default step against today's. '{AS_BEFORE}' computes what "
             f"the earlier default did ({' '.join(AS_BEFORE_OVERRIDES)}), so its loss must match to float rounding.",
             "", "| code | steady step (s) | speed-up | final loss |", "|---|---:|---:|---:|"]
    for label in (f"before ({base['commit']})", AS_BEFORE, "default"):
        r = payload["runs"].get(label, {})
        if "step_s" not in r or "step_s" not in before:
            lines.append(f"| {label} | failed: {r.get('error', before.get('error', '?'))} | | |")
            continue
        lines.append(f"| {label} | {r['step_s']:.3f} | {before['step_s'] / r['step_s']:.2f}x | {r['final_loss']:.5f} |")
    now, then = payload["rates"], base["rates"]
    if "error" not in now and "error" not in then:
        lines += ["", "ResNet-18 forward + backward (eager) as a fraction of the fp32 matmul rate: "
                  f"before {100 * then['eager']['fraction_of_matmul']:.0f}% ({then['eager']['gflops']:.0f} of "
                  f"{then['matmul_gflops']:.0f} GFLOP/s), after {100 * now['eager']['fraction_of_matmul']:.0f}% "
                  f"({now['eager']['gflops']:.0f} of {now['matmul_gflops']:.0f} GFLOP/s)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (after the first 5)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the fastest is kept")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--switches", nargs="+", choices=list(SWITCHES), default=list(SWITCHES))
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit (git worktree add DIR COMMIT): "
                        "its default step and convolution rate are measured beside today's, in the same rounds")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        torch.manual_seed(0)
        kind, *rest = args.case
        result = {"rates": lambda: case_rates(args.repeats), "phases": lambda: case_phases(args.repeats),
                  "run": lambda: case_run(" ".join(rest[1:]), int(rest[0]))}[kind]()
        print(json.dumps(result))
        return
    if args.quick:
        args.steps, args.rounds, args.repeats = 5, 1, 2
    script = Path(__file__)
    rates_args = ["--case", "rates", "--repeats", str(args.repeats)]
    payload = {"machine": machine(), "steps": args.steps, "rates": run_isolated(script, rates_args),
               "phases": run_isolated(script, ["--case", "phases", "--repeats", str(args.repeats)]),
               "runs": {}}
    # label -> (switch, the checkout whose package runs it; None = this one)
    cases: dict[str, tuple[str, Path | None]] = {name: (name, None) for name in args.switches}
    if args.baseline:
        tree = args.baseline.resolve()
        if not (tree / "pixelssl" / "__init__.py").is_file():
            parser.error(f"--baseline {tree}: no pixelssl package there (make one with git worktree add DIR COMMIT)")
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "?"
        payload["baseline"] = {"tree": str(tree), "commit": commit,
                               "rates": run_isolated(script, rates_args, package_tree=tree)}
        cases[AS_BEFORE] = (AS_BEFORE, None)
        cases[f"before ({commit})"] = ("default", tree)
    runs: dict[str, list[dict]] = {label: [] for label in cases}
    for _ in range(args.rounds):
        for label, (switch, tree) in cases.items():
            print(f"running {label} ...", file=sys.stderr, flush=True)
            runs[label].append(run_isolated(script, ["--case", "run", str(args.steps), *switch.split()],
                                            package_tree=tree))
    for label, results in runs.items():
        good = [r for r in results if "error" not in r]
        payload["runs"][label] = min(good, key=lambda r: r["step_s"]) if good else results[0]
    write_results("demo_step", payload, table(payload), quick=args.quick)


if __name__ == "__main__":
    main()
