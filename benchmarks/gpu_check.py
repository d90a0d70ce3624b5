"""The first GPU run in one command (< 8 minutes on one H200): pre-training throughput, eager and compiled, bf16
against fp32, a one-process NCCL run, and inpainting fill time. No GPU has run this code yet (issue #18).

Parts, each in its own process with its own time limit, so that one failure (or hang) is recorded with its one-line
error and the others still run; the JSON is rewritten after every part, so a kill keeps what was measured:

1. ``throughput_bf16``: PixPro ResNet-50 at 224 px, batch 128, ``train.amp=bf16``, through ``pixelssl.train.loop``
   (``pretrain(cfg)`` from the ``pixpro_r50`` preset) on the real data pipeline: 512 JPEG files of 512x384
   (synthetic scenes written here, the GPU machine has no internet), read by 8 loader workers, decoded by nvJPEG
   and augmented on the device (``data.device_decode``, ``data.device_augment``). images/s over 20 steps after 10
   warm-up steps, from the loop's own per-step metrics (``train.log_every=1``; a step includes its data wait).
2. ``throughput_compile``: the same with ``train.compile=true``; compile time (warm-up time beyond 10 steady
   steps) reported apart from steady-state images/s; dynamo's graph and graph-break counts. Runs last, because its
   time is the least predictable: it gets what is left of the budget.
3. ``bf16_vs_fp32``: 20 steps of the same run (same seed, so same weights, data and augmentation) in bf16 and in
   fp32 (cuDNN's default TF32 convolutions, as ``train.amp=fp32`` runs); both loss curves, the absolute difference
   per step and the relative one, ``|bf16 - fp32| / max(|fp32|, 0.1)``, checked against ``TOLERANCE`` (the floor
   keeps a loss passing near 0 from inflating the ratio; PixPro's loss, -2 cos summed over both directions, lies
   in [-4, 4]).
4. ``nccl``: a subprocess with torchrun's environment for one process (``WORLD_SIZE=1``, ``RANK=0``,
   ``LOCAL_RANK=0``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``) runs 10 pre-training steps with
   ``model.sync_bn=true`` through ``pixelssl.engine.distributed``: NCCL group via ``env://``, SyncBatchNorm
   conversion, DDP wrap, the loop's collectives (loss all-reduce, checkpoint gathers, replica check), shutdown.
   pixelssl treats a group of one as "not distributed" (it would skip all of that), so the worker counts a
   one-process group as distributed (``pixelssl.dist.is_distributed`` and two attributes of
   ``pixelssl.engine.distributed`` patched in that subprocess only, plus wrappers around ``init`` and ``wrap`` that
   record the backend and the wrapper type). torch's
   SyncBatchNorm itself exchanges no statistics at world size 1 (it falls back to BatchNorm's kernel); its
   cross-GPU exchange needs two GPUs.
5. ``fill``: ``pixelssl.inpaint.fill.fill_images`` of one 512 and one 1024 px image (centred quarter-area hole)
   with the release-sized generator (cnum 32, contextual attention on), fp32 and bf16 autocast, median of 5 after
   2 warm-up fills. The generator is untrained (random weights): the time does not depend on the weights.

Time: the parts' limits (120, 120, 90 and 60 s; compile gets the rest of a 440 s budget, at least 50 s) keep the
whole under 8 minutes, JPEG writing included; a part past its limit is killed with its process group.

Tolerance of part 3: ``TOLERANCE`` = 5% relative loss difference at every step, because bf16 keeps 8 significant
bits (2^-9 = 0.2% per rounding) and the runs drift apart as updates compound (1.1% at step 1 at toy size on this
CPU's emulated bf16, batch 4), while a broken mixed-precision path (a wrong cast, an overflow, a loss reduced in
bf16) shows up as tens of percent or NaN.

Without CUDA the script prints one line and exits 0 without writing anything. ``--device cpu --tiny`` runs every
part at toy sizes on the CPU into a temporary folder, so that every code path of this script runs on a machine
without a GPU (``tests/test_gpu_check.py``): ResNet-18, 64 px, batch 4, 1 + 2 steps (part 3: 2), 16 JPEGs of 128x96,
gloo instead of NCCL, fill at 64 px; bf16 only where this CPU runs it natively, except in parts 3 and 5 (emulated);
``torch.compile`` with the "eager" backend (dynamo traces the model and runs the captured graphs, without
inductor's minutes of C++ code generation; ``tests/train/test_distributed.py`` compiles with inductor, marked slow).

    python benchmarks/gpu_check.py                        # writes benchmarks/results/gpu_check.{json,md}
    python benchmarks/gpu_check.py --device cpu --tiny    # toy sizes on the CPU, into a temporary folder
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOLERANCE = 0.05  # part 3: max |bf16 - fp32| / max(|fp32|, REL_FLOOR) of the loss at any step (see the docstring)
REL_FLOOR = 0.1
RESULT_TAG = "GPU_CHECK_RESULT "  # a part's process prints its result as this tag + one JSON line
SKIP_LINE = "gpu_check: CUDA is not available on this machine; skipped (nothing written)"
PARTS = ("throughput_bf16", "bf16_vs_fp32", "nccl", "fill", "throughput_compile")  # run order; compile last
TITLES = {"throughput_bf16": "1. PixPro training throughput, bf16", "throughput_compile": "2. the same, torch.compile",
          "bf16_vs_fp32": "3. bf16 against fp32, same seed", "nccl": "4. one-process NCCL run: DDP + SyncBN",
          "fill": "5. inpainting fill time"}


@dataclass(frozen=True)
class Sizes:
    backbone: str
    image_size: int
    batch: int
    warmup: int  # untimed steps of parts 1 and 2
    timed: int
    compare_steps: int  # part 3
    nccl_steps: tuple[int, int]  # part 4: (warm-up, timed)
    jpeg_count: int
    jpeg_size: tuple[int, int]  # (width, height)
    workers: int
    fill_sizes: tuple[int, ...]
    fill_repeats: int
    limits_s: dict = field(default_factory=dict)  # per part; compile gets what is left of budget_s
    budget_s: float = 440.0  # the whole run, JPEG writing included (+ at most 5 s per part to collect its output)
    heads: tuple[int, int] | None = None  # (proj_hidden_dim, proj_dim); None = the preset's 4096 / 256


FULL = Sizes("resnet50", 224, 128, 10, 20, 20, (3, 7), 512, (512, 384), min(8, os.cpu_count() or 1), (512, 1024), 5,
             {"throughput_bf16": 120, "bf16_vs_fp32": 120, "nccl": 90, "fill": 60, "throughput_compile": 300}, 440.0)
TINY = Sizes("resnet18", 64, 4, 1, 2, 2, (1, 2), 16, (128, 96), 1, (64,), 2,
             {name: 300 for name in PARTS}, 1200.0, heads=(64, 32))


# --------------------------------------------------------------------------------------- inside a part's process
def native_bf16(device: str) -> bool:
    from pixelssl.engine.runtime import cpu_has_native_bf16

    return device == "cuda" or cpu_has_native_bf16()


def train_overrides(s: Sizes, args: argparse.Namespace, name: str, amp: str, steps: int) -> list[str]:
    out = [f"model.backbone={s.backbone}", f"data.image_size={s.image_size}", f"data.root={args.jpegs}",
           "data.device_augment=true", "data.device_decode=true", f"data.num_workers={s.workers}",
           f"train.batch_size={s.batch}", f"train.amp={amp}", "train.channels_last=true", f"train.device={args.device}",
           f"train.max_steps={steps}", "train.seed=0", "train.log_every=1", "train.tensorboard=false",
           "train.progress=false", f"train.checkpoint_every={steps}", "train.keep_checkpoints=0",
           f"run.output_dir={args.scratch}", f"run.name={name}"]
    if s.heads:
        out += [f"model.proj_hidden_dim={s.heads[0]}", f"model.proj_dim={s.heads[1]}"]
    if args.tiny:
        out += ["train.threads=1"]
    return out


def train(s: Sizes, args: argparse.Namespace, name: str, amp: str, steps: int, extra: tuple[str, ...] = ()) -> dict:
    """One pre-training run through ``pixelssl.train.loop.pretrain``: its per-step times and losses."""
    import torch

    from pixelssl.config import PretrainConfig, load_config
    from pixelssl.engine.logger import read_metrics
    from pixelssl.train.loop import pretrain

    cfg = load_config(PretrainConfig, "pixpro_r50", [*train_overrides(s, args, name, amp, steps), *extra])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = pretrain(cfg)
    wall = time.perf_counter() - started
    records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "img_per_s" in r]
    out = {"steps": len(records), "wall_s": wall, "run_dir": str(result.run_dir), "method": result.method,
           "step_s": [s.batch / r["img_per_s"] for r in records], "data_wait": [r["data_wait"] for r in records],
           "loss": [r["loss"] for r in records]}
    if args.device == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def throughput(run: dict, batch: int, warmup: int) -> dict:
    """images/s and step time over the steps after ``warmup`` (each step's time includes its data wait)."""
    timed = run["step_s"][warmup:]
    if not timed:
        raise RuntimeError(f"the run logged {len(run['step_s'])} steps, none after {warmup} warm-up steps")
    median = statistics.median(timed)
    return {"images_per_s": batch * len(timed) / sum(timed), "step_s_median": median, "step_s_max": max(timed),
            "first_step_s": run["step_s"][0], "warmup_s": sum(run["step_s"][:warmup]),
            "data_wait_share": statistics.fmean(run["data_wait"][warmup:]), "timed_steps": len(timed),
            "warmup_steps": warmup, "step_s": [round(t, 5) for t in run["step_s"]], "run_wall_s": run["wall_s"],
            **({"peak_gpu_mib": run["peak_gpu_mib"]} if "peak_gpu_mib" in run else {})}


def part_throughput_bf16(s: Sizes, args: argparse.Namespace) -> dict:
    amp = "bf16" if native_bf16(args.device) else "fp32"  # emulated bf16 on a CPU would take minutes per step
    run = train(s, args, "eager", amp, s.warmup + s.timed)
    return {"amp": amp, **throughput(run, s.batch, s.warmup)}


def part_throughput_compile(s: Sizes, args: argparse.Namespace) -> dict:
    import torch

    amp = "bf16" if native_bf16(args.device) else "fp32"
    backend = "inductor"
    if args.tiny:  # inductor's C++ code generation takes minutes on a small CPU: trace, run the traced graphs
        backend = "eager"
        compile_module = torch.nn.Module.compile
        torch.nn.Module.compile = lambda self, *a, **k: compile_module(self, *a, **{"backend": backend, **k})
    run = train(s, args, "compiled", amp, s.warmup + s.timed, ("train.compile=true",))
    out = {"amp": amp, "backend": backend, **throughput(run, s.batch, s.warmup)}
    out["compile_s"] = max(out["warmup_s"] - s.warmup * out["step_s_median"], 0.0)  # warm-up beyond steady steps
    try:
        from torch._dynamo.utils import counters

        out["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
        out["dynamo_graph_breaks"] = int(sum(counters["graph_break"].values()))
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        out["dynamo_counters"] = f"unavailable: {exc}"
    return out


def part_bf16_vs_fp32(s: Sizes, args: argparse.Namespace) -> dict:
    import torch

    runs = {amp: train(s, args, amp, amp, s.compare_steps) for amp in ("bf16", "fp32")}
    bf16, fp32 = runs["bf16"]["loss"], runs["fp32"]["loss"]
    if len(bf16) != len(fp32) or not fp32:
        raise RuntimeError(f"the runs logged {len(bf16)} and {len(fp32)} losses")
    absolute = [abs(a - b) for a, b in zip(bf16, fp32)]
    relative = [d / max(abs(b), REL_FLOOR) for d, b in zip(absolute, fp32)]
    return {"steps": len(fp32), "loss_bf16": bf16, "loss_fp32": fp32, "abs_diff": absolute, "rel_diff": relative,
            "max_abs_diff": max(absolute), "max_rel_diff": max(relative), "first_step_rel_diff": relative[0],
            "tolerance_rel": TOLERANCE, "rel_floor": REL_FLOOR, "within_tolerance": max(relative) <= TOLERANCE,
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


def count_one_process_group_as_distributed() -> dict:
    """Make pixelssl run its distributed code paths in a process group of one (it treats world size 1 as single
    process and would skip them); returns what the run went through, filled in while it runs."""
    import torch.distributed as dist

    import pixelssl.dist
    from pixelssl.engine import distributed

    seen: dict = {}
    distributed.launched_world_size = lambda: 2  # only gates init(): the group itself is WORLD_SIZE from the env
    pixelssl.dist.is_distributed = lambda: dist.is_available() and dist.is_initialized()  # the collectives' gate
    distributed.DistContext.enabled = property(lambda self: dist.is_available() and dist.is_initialized())
    init, wrap = distributed.init, distributed.wrap

    def recording_init(*a, **k):
        ctx = init(*a, **k)
        seen.update(backend=dist.get_backend(), world_size=dist.get_world_size(), rank=ctx.rank,
                    device=str(ctx.device))
        return ctx

    def recording_wrap(model, ctx):
        wrapped = wrap(model, ctx)
        seen["wrapped_as"] = type(wrapped).__name__
        return wrapped

    distributed.init, distributed.wrap = recording_init, recording_wrap
    return seen


def part_nccl(s: Sizes, args: argparse.Namespace) -> dict:
    from torch import nn

    from pixelssl.dist import SYNCED_BATCHNORM

    seen = count_one_process_group_as_distributed()
    warmup, timed = s.nccl_steps
    amp = "bf16" if native_bf16(args.device) else "fp32"
    run = train(s, args, "nccl", amp, warmup + timed, ("model.sync_bn=true",))
    synced = [type(m).__name__ for m in run["method"].modules() if isinstance(m, SYNCED_BATCHNORM)]
    plain = [m for m in run["method"].modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and not isinstance(m, SYNCED_BATCHNORM)]
    if seen.get("wrapped_as") != "DistributedDataParallel" or not synced or plain:
        raise RuntimeError(f"the distributed paths did not all run: {seen}, {len(synced)} synced and {len(plain)} "
                           "plain BatchNorm layers")
    return {"ok": True, "amp": amp, **seen, "sync_bn_layers": len(synced), "sync_bn_class": synced[0],
            "env": {k: os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")},
            **throughput(run, s.batch, warmup)}


def part_fill(s: Sizes, args: argparse.Namespace) -> dict:
    import torch
    from common import time_it

    from pixelssl.inpaint.fill import fill_images
    from pixelssl.inpaint.networks import InpaintGenerator

    device = torch.device(args.device)
    torch.manual_seed(0)
    generator = InpaintGenerator(cnum=32, use_contextual_attention=True).to(device).eval()  # untrained: timing only
    generator = generator.to(memory_format=torch.channels_last)
    rows = []
    for size in s.fill_sizes:
        image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        hole = torch.zeros(1, 1, size, size, dtype=torch.bool)
        hole[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = True
        for dtype in ("fp32", "bf16"):
            def fill(dtype=dtype, image=image, hole=hole):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    return fill_images(generator, image, hole)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            timing = time_it(fill, device, s.fill_repeats, warmup=2)
            row = {"size": size, "dtype": dtype, **timing}
            if device.type == "cuda":
                row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
            rows.append(row)
            print(f"fill {size} px {dtype}: {timing['median_s']:.4f} s", flush=True)
    return {"generator": "InpaintGenerator(cnum=32, contextual attention), untrained random weights", "hole": "centred "
            "square, a quarter of the area", "batch": 1, "rows": rows}


PART_FUNCTIONS = {"throughput_bf16": part_throughput_bf16, "throughput_compile": part_throughput_compile,
                  "bf16_vs_fp32": part_bf16_vs_fp32, "nccl": part_nccl, "fill": part_fill}


def run_part(args: argparse.Namespace) -> None:
    """Entry of a part's process: run it and print its result as the last line."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    if args.tiny:
        torch.set_num_threads(1)
    s = TINY if args.tiny else FULL
    result = PART_FUNCTIONS[args.part](s, args)
    print(RESULT_TAG + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ the driver
def write_jpegs(folder: Path, s: Sizes) -> float:
    """``s.jpeg_count`` synthetic scenes cut to ``s.jpeg_size`` as quality-90 JPEG files; returns the seconds."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder, index, s.jpeg_count, s.jpeg_size) for index in range(s.jpeg_count)]
    processes = min(16, os.cpu_count() or 1, max(1, s.jpeg_count // 8))
    if processes > 1:
        import multiprocessing

        # Workers take the default SIGTERM action, not main()'s handler (which would leave them stuck on exit).
        pool = multiprocessing.get_context("fork").Pool(processes, signal.signal, (signal.SIGTERM, signal.SIG_DFL))
        try:
            pool.map(_write_jpeg, jobs, chunksize=4)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
    else:
        for job in jobs:
            _write_jpeg(job)
    return time.perf_counter() - started


def _write_jpeg(job: tuple[Path, int, int, tuple[int, int]]) -> None:
    from PIL import Image

    from pixelssl.data.synthetic import SyntheticScenes

    folder, index, count, (width, height) = job
    scene = SyntheticScenes(count, size=max(width, height), seed=0, split="train").load(index)  # (3, S, S) uint8
    Image.fromarray(scene[:, :height, :width].permute(1, 2, 0).numpy()).save(folder / f"{index:05d}.jpg", quality=90)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(part: str, args: argparse.Namespace, jpegs: Path, scratch: Path, limit: float) -> dict:
    """Run one part in its own process (its own process group, killed whole past ``limit``), echoing its output."""
    command = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--device", args.device,
               "--jpegs", str(jpegs), "--scratch", str(scratch / part)] + (["--tiny"] if args.tiny else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines arrive as they are printed
    if part == "nccl":  # what torchrun sets for a one-process job
        env.update(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", GROUP_RANK="0",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    result: list[str] = []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True, cwd=HERE.parent)

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(RESULT_TAG):
                result.append(line[len(RESULT_TAG):])
                continue
            tail.append(line)
            print(f"    | {line}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    started, timed_out = time.perf_counter(), False
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the part's processes along
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if timed_out:
        os.killpg(proc.pid, signal.SIGKILL)  # the part's process group: it, its loader and compile workers
        proc.wait()
    reader.join(timeout=5)
    seconds = time.perf_counter() - started
    if result and proc.returncode == 0:
        return {**json.loads(result[-1]), "part_s": seconds}
    if timed_out:
        error = f"timed out after {limit:g} s (killed)"
    else:
        lines = [line for line in tail if line.strip()]
        error = next((line for line in reversed(lines) if not line.startswith(" ")), None) or \
            f"exited with code {proc.returncode}"
    return {"error": error, "returncode": proc.returncode, "part_s": seconds, "log_tail": list(tail)[-25:]}


def machine_info(device: str) -> dict:
    import torch
    from common import git_commit, machine

    info = machine()
    info["commit"] = git_commit()
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
        try:
            info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:  # noqa: BLE001 - a fact for the record only
            pass
    return info


def table(payload: dict) -> str:
    s, parts, info = payload["sizes"], payload["parts"], payload["machine"]
    where = info.get("gpu", f"CPU ({info['cores']} cores)")
    flags = " --device cpu --tiny" if payload["tiny"] and payload["device"] == "cpu" else " --tiny" * payload["tiny"]
    lines = [f"GPU check (`python benchmarks/gpu_check.py{flags}`), {info['date']} on {where}, "
             f"torch {info['torch']}, commit {info['commit']}: PixPro {s['backbone']} {s['image_size']} px, batch "
             f"{s['batch']}, {s['jpeg_count']} JPEGs of {s['jpeg_size'][0]}x{s['jpeg_size'][1]} decoded and augmented "
             f"on the device, loader workers: {s['workers']}", "", "| part | result | part time (s) |", "|---|---|---:|"]
    for name in sorted(parts, key=TITLES.__getitem__):  # in the order of the titles' numbers
        r = parts[name]
        lines.append(f"| {TITLES[name]} | {summary(name, r)} | {r.get('part_s', 0):.0f} |")
    lines += ["", "images/s: batch x timed steps / their time (each step with its data wait), after the warm-up steps. "
              f"Part 3 passes when |bf16 - fp32| / max(|fp32|, {REL_FLOOR:g}) of the loss <= {TOLERANCE:g} at every "
              "step. The fill "
              "generator is untrained (timing only). Details in gpu_check.json."]
    return "\n".join(lines)


def summary(name: str, r: dict) -> str:
    if "error" in r:
        return f"**error**: {r['error']}"
    if name in ("throughput_bf16", "throughput_compile", "nccl"):
        text = (f"{r['images_per_s']:.1f} img/s, step {r['step_s_median']:.3f} s (max {r['step_s_max']:.3f}), "
                f"data wait {100 * r['data_wait_share']:.0f}%, {r['amp']}")
        if name == "throughput_compile":
            text += f", compile {r['compile_s']:.1f} s ({r['backend']})"
            if "speedup_vs_eager" in r:
                text += f", {r['speedup_vs_eager']:.2f}x eager"
        if name == "nccl":
            text = (f"ok: {r['backend']}, world {r['world_size']}, {r['wrapped_as']}, {r['sync_bn_layers']} "
                    f"{r['sync_bn_class']}; " + text)
        if "peak_gpu_mib" in r:
            text += f", peak {r['peak_gpu_mib'] / 1024:.1f} GiB"
        return text
    if name == "bf16_vs_fp32":
        verdict = "pass" if r["within_tolerance"] else "**FAIL**"
        return (f"{verdict}: max rel. diff {100 * r['max_rel_diff']:.2f}% (step 1: {100 * r['first_step_rel_diff']:.3f}"
                f"%), max abs {r['max_abs_diff']:.4f} over {r['steps']} steps; loss {r['loss_fp32'][0]:.4f} -> "
                f"{r['loss_fp32'][-1]:.4f} (fp32)")
    return ", ".join(f"{row['size']} px {row['dtype']} {row['median_s']:.4f} s" for row in r["rows"])


def write(folder: Path, payload: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpu_check.json").write_text(json.dumps(payload, indent=2) + "\n")
    (folder / "gpu_check.md").write_text(table(payload) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (every code path in a few minutes on a CPU)")
    parser.add_argument("--out", default="", help="results folder (default: benchmarks/results; with --tiny a "
                                                   "temporary folder)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS))
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--jpegs", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part(args)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stop from outside still cleans up the parts

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_LINE, flush=True)
        return 0
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu runs only with --tiny (the full sizes are for a GPU)")
    parts = [p for p in PARTS if p in args.parts.split(",")]
    if not parts:
        parser.error(f"--parts: none of {args.parts!r} is one of {', '.join(PARTS)}")
    s = TINY if args.tiny else FULL
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="gpu_check_tiny_")) if args.tiny
                                           else HERE / "results")
    started = time.perf_counter()
    print(f"gpu_check: {len(parts)} part(s) on {args.device}{' (tiny)' if args.tiny else ''}, budget "
          f"{s.budget_s:.0f} s; results in {out}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    jpegs = scratch / "jpegs"
    try:  # before this process touches CUDA (machine_info), as it forks the writers
        seconds, jpeg_error = write_jpegs(jpegs, s), None
        print(f"gpu_check: wrote {s.jpeg_count} JPEGs of {s.jpeg_size[0]}x{s.jpeg_size[1]} in {seconds:.1f} s",
              flush=True)
    except Exception as exc:  # noqa: BLE001 - recorded; the fill part needs no files
        seconds, jpeg_error = time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        print(f"gpu_check: writing the JPEG files failed: {jpeg_error}", flush=True)
    payload = {"machine": machine_info(args.device), "tiny": args.tiny, "device": args.device,
               "sizes": {k: v for k, v in asdict(s).items() if k != "limits_s"}, "tolerance_rel": TOLERANCE,
               "budget_s": s.budget_s, "limits_s": s.limits_s, "jpeg_write_s": seconds, "parts": {}}
    try:
        for index, part in enumerate(parts, 1):
            left = s.budget_s - (time.perf_counter() - started)
            limit = min(s.limits_s[part], left - 5)
            skip = (f"not run: {left:.0f} s of the {s.budget_s:.0f} s budget left" if limit < 20 else
                    f"not run: writing the JPEG files failed ({jpeg_error})" if jpeg_error and part != "fill" else "")
            if skip:
                payload["parts"][part] = {"error": skip}
                write(out, payload)
                continue
            print(f"gpu_check: [{index}/{len(parts)}] {part}: {TITLES[part]} (limit {limit:.0f} s)", flush=True)
            try:
                result = launch(part, args, jpegs, scratch, limit)
            except Exception as exc:  # noqa: BLE001 - the driver itself failed for this part; go on with the rest
                result = {"error": f"{type(exc).__name__}: {exc}", "log_tail": traceback.format_exc().splitlines()}
            shutil.rmtree(scratch / part, ignore_errors=True)  # its run directories and checkpoints
            eager = payload["parts"].get("throughput_bf16", {})
            if part == "throughput_compile" and "images_per_s" in result and "images_per_s" in eager:
                result["speedup_vs_eager"] = result["images_per_s"] / eager["images_per_s"]
            payload["parts"][part] = result
            payload["elapsed_s"] = time.perf_counter() - started
            write(out, payload)
            print(f"gpu_check: {part}: {summary(part, result)} ({result['part_s']:.0f} s)" if "part_s" in result
                  else f"gpu_check: {part}: {summary(part, result)}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    payload["complete"] = True
    payload["elapsed_s"] = time.perf_counter() - started
    write(out, payload)
    print(table(payload), flush=True)
    print(f"gpu_check: finished in {payload['elapsed_s']:.0f} s; wrote {out / 'gpu_check.json'} and "
          f"{out / 'gpu_check.md'}", flush=True)
    failed = [p for p, r in payload["parts"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
