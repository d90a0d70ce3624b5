"""Data-parallel pre-training under torchrun on CPU (gloo): N processes with the global batch split between them
train the same model as one process with that batch; replicas stay identical; queues gather every rank's keys;
a distributed run resumes exactly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixelssl.config import PretrainConfig, load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.engine.runtime import seed_everything
from pixelssl.methods.registry import build_method
from pixelssl.train.loop import pretrain

HERE = Path(__file__).resolve().parent
# A small lr keeps the runs in the regime where float32 rounding (about 1e-3 of a ResNet gradient with batches
# this small, measured against float64) cannot grow into visibly different curves within a few steps.
TINY = [
    "model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16",
    "data.image_size=64", "data.synthetic.num_images=16", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=8", "train.optimizer=sgd", "train.base_lr=0.01", "train.warmup_steps=0",
    "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32", "train.threads=1",
]
PIXPRO = [*TINY, "method.name=pixpro", "model.sync_bn=true", "train.max_steps=3", "train.checkpoint_every=1",
          "train.keep_checkpoints=5"]
MOCO = [*TINY, "method.name=moco", "method.queue_size=20", "model.sync_bn=true", "data.image_size=32",
        "train.max_steps=4", "train.checkpoint_every=2", "train.keep_checkpoints=5"]


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N ARGS`` (a free port, one thread per process)."""
    launcher = Path(sys.executable).with_name("torchrun")
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*command, "--standalone", f"--nproc_per_node={nproc}", *args], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")]


# --------------------------------------------------------------------------- the CLI, and the scaling simulation
@pytest.fixture(scope="module")
def pixpro_runs(tmp_path_factory) -> dict[int, Path]:
    """The same PixPro run (SyncBN on, global batch 8) with one process (in this one) and with two (torchrun CLI)."""
    root = tmp_path_factory.mktemp("pixpro")
    proc = torchrun(2, "-m", "pixelssl", "pretrain", *PIXPRO, f"run.output_dir={root}", "run.name=two")
    assert proc.stdout.count("run: ") == 1  # only rank 0 reports
    pretrain(load_config(PretrainConfig, overrides=[*PIXPRO, f"run.output_dir={root}", "run.name=one"]))
    return {1: root / "one", 2: root / "two"}


def test_torchrun_pretrain_cli_writes_one_run(pixpro_runs):
    run = pixpro_runs[2]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]  # one writer, not one per rank
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["step"] == 3 and state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert (run / "backbone.safetensors").is_file()


def _initial_weights() -> dict[str, torch.Tensor]:
    seed_everything(0)  # what pretrain() does before building the model
    return build_method(load_config(PretrainConfig, overrides=PIXPRO)).state_dict()


def assert_same_training(runs: dict[int, Path], nproc: int) -> None:
    one, many = losses(runs[1]), losses(runs[nproc])
    assert abs(one[0] - many[0]) < 1e-5  # step 1 sees the same weights: only rounding differs
    assert many == pytest.approx(one, rel=5e-3)
    # The first update (w1 - w0) is the same gradient step; a missing or doubled reduction would be off by ~100%.
    init = _initial_weights()
    w1 = {n: load_checkpoint(runs[n] / "checkpoints" / "step_00000001.pt")["model"] for n in (1, nproc)}
    keys = [k for k, v in init.items() if v.is_floating_point() and "running" not in k]
    delta = {n: torch.cat([(w1[n][k] - init[k]).flatten() for k in keys]) for n in (1, nproc)}
    assert delta[1].norm() > 0
    assert (delta[nproc] - delta[1]).norm() / delta[1].norm() < 2e-2


def test_two_processes_train_like_one_with_the_global_batch(pixpro_runs):
    assert_same_training(pixpro_runs, 2)


@pytest.mark.slow
def test_four_processes_train_like_one_with_the_global_batch(pixpro_runs):
    four = pixpro_runs[1].parent / "four"
    torchrun(4, "-m", "pixelssl", "pretrain", *PIXPRO, f"run.output_dir={four.parent}", "run.name=four")
    assert_same_training({**pixpro_runs, 4: four}, 4)


# --------------------------------------------------------------------------- replicas, queues, resume
@pytest.fixture(scope="module")
def moco_runs(tmp_path_factory) -> dict[str, Path]:
    """MoCo-v2 with a queue on two processes for 4 steps, and the same run resumed from its step-2 checkpoint."""
    root = tmp_path_factory.mktemp("moco")
    (root / "full").mkdir()
    torchrun(2, str(HERE / "dist_worker.py"), str(root / "full"), "new", *MOCO, f"run.output_dir={root}",
             "run.name=run")
    resumed = root / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(root / "run" / "checkpoints" / "step_00000002.pt", resumed / "checkpoints" / "last.pt")
    torchrun(2, str(HERE / "dist_worker.py"), str(resumed), "resume", str(resumed))
    return {"run": root / "run", "full": root / "full", "resumed": resumed}


def test_replicas_hold_identical_weights_teachers_and_queues(moco_runs):
    rank0, rank1 = (torch.load(moco_runs["full"] / f"rank{r}.pt", weights_only=True)["state"] for r in (0, 1))
    assert rank0.keys() == rank1.keys() and any(k.startswith("backbone_k.") for k in rank0)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def test_queue_enqueues_the_keys_of_every_rank_in_rank_order(moco_runs):
    expected = torch.cat([torch.full((3, 4), 1.0), torch.full((3, 4), 2.0)])
    for rank in (0, 1):
        dump = torch.load(moco_runs["full"] / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(dump["probe_keys"][:6], expected) and dump["probe_ptr"] == 6
        # 4 steps x 8 keys (4 per rank) entered the training queue of 20
        assert int(dump["state"]["queue.ptr"]) == (4 * 8) % 20


def test_cpu_sync_batchnorm_matches_batchnorm_on_the_whole_batch(moco_runs, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    from dist_worker import bn_probe_batch, bn_probe_net

    net = bn_probe_net()
    out = net(bn_probe_batch())
    out.square().mean().backward()
    parts = [torch.load(moco_runs["full"] / f"rank{r}.pt", weights_only=True)["sync_bn"] for r in (0, 1)]
    assert parts[0]["converted"] == "CpuSyncBatchNorm"
    torch.testing.assert_close(torch.cat([p["out"] for p in parts]), out.detach(), atol=1e-5, rtol=0)
    for got, param in zip(parts[0]["grads"], net.parameters()):
        torch.testing.assert_close(got, param.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(parts[0]["running_var"], net[1].running_var)


def test_count_normalised_losses_average_to_the_single_process_loss(moco_runs, monkeypatch):
    """PixContrast's valid-pixel mean and PixCon-SR's weighted mean use the global count: ranks with unequal counts
    still give the one-process loss and gradients."""
    monkeypatch.syspath_prepend(str(HERE))
    from dist_worker import loss_probe

    single = loss_probe(0, 1)
    parts = [torch.load(moco_runs["full"] / f"rank{r}.pt", weights_only=True)["losses"] for r in (0, 1)]
    for name in ("pixel", "dense"):
        torch.testing.assert_close((parts[0][name]["loss"] + parts[1][name]["loss"]) / 2, single[name]["loss"])
        torch.testing.assert_close(torch.cat([p[name]["grad"] for p in parts]), single[name]["grad"])
    # A per-rank mean (each half on its own, in this process) would average to something visibly different.
    halves = [loss_probe_on(inputs) for inputs in split_probe_inputs()]
    for name in ("pixel", "dense"):
        assert abs(float(halves[0][name] + halves[1][name]) / 2 - float(single[name]["loss"])) > 1e-2


def split_probe_inputs() -> list[dict]:
    from dist_worker import loss_probe_inputs

    full = loss_probe_inputs()
    return [{n: t if n == "queue" else t.chunk(2)[i] for n, t in full.items()} for i in (0, 1)]


def loss_probe_on(x: dict) -> dict:
    from pixelssl.losses import dense_info_nce, pixel_info_nce

    return {"pixel": pixel_info_nce(x["q"], x["k"], x["positives"], x["valid"], 0.2, x["queue"]),
            "dense": dense_info_nce(x["q"], x["k"], x["queue"], 0.2, x["weights"])}


def test_distributed_resume_is_bit_identical(moco_runs):
    for rank in (0, 1):
        full = torch.load(moco_runs["full"] / f"rank{rank}.pt", weights_only=True)["state"]
        resumed = torch.load(moco_runs["resumed"] / f"rank{rank}.pt", weights_only=True)["state"]
        for key in full:
            assert torch.equal(full[key], resumed[key]), (rank, key)
    assert [r["step"] for r in read_metrics(moco_runs["resumed"] / "metrics.jsonl")] == [3, 4]
    assert losses(moco_runs["resumed"]) == losses(moco_runs["run"])[2:]


# --------------------------------------------------------------------------- torch.compile, SLURM's warning signal
@pytest.mark.slow
@pytest.mark.parametrize("method", [["method.name=pixpro"],
                                    ["method.name=pixcon_sr", "method.queue_size=32", "data.require_overlap=true"]])
def test_compiled_model_trains_like_the_eager_one(tmp_path, method):
    common = [*TINY, *method, "data.image_size=32", "train.max_steps=2", f"run.output_dir={tmp_path}"]
    eager = pretrain(load_config(PretrainConfig, overrides=[*common, "run.name=eager"]))
    compiled = pretrain(load_config(PretrainConfig, overrides=[*common, "run.name=compiled", "train.compile=true"]))
    first, second = losses(eager.run_dir), losses(compiled.run_dir)
    assert abs(first[0] - second[0]) < 1e-4 and second == pytest.approx(first, rel=1e-2)  # fused kernels round differently
    assert set(load_checkpoint(compiled.run_dir / "checkpoints" / "last.pt")["model"]) == \
        set(load_checkpoint(eager.run_dir / "checkpoints" / "last.pt")["model"])  # names unchanged by compile


def test_torchrun_forwards_slurms_warning_signal_to_every_process(tmp_path):
    """The README's SLURM recipe: torchrun with ``--signals-to-handle ...SIGUSR1`` passes SLURM's USR1 warning to
    its processes, which finish the step, agree, checkpoint and exit 75; the run then resumes to the end."""
    import signal
    import time

    launcher = Path(sys.executable).with_name("torchrun")
    command = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    run = tmp_path / "slurm"
    args = [*TINY, "method.name=pixpro", "train.max_steps=400", "train.checkpoint_every=1000",
            f"run.output_dir={tmp_path}", "run.name=slurm"]
    proc = subprocess.Popen([*command, "--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1", "--shutdown-timeout", "120",
                             "--standalone", "--nproc_per_node=2", "-m", "pixelssl", "pretrain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training did not start in time"
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun reports the signal itself; its processes' exit codes are in its log
    assert err.count("SIGUSR1 after step") >= 1 and "Traceback (most recent call last)" not in err.split("SIGUSR1")[0]
    step = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 1 <= step < 400 and not (run / "backbone.safetensors").exists()
