"""Live monitors (train.monitor_every): collapse indicators and a small probe, written as monitor/* metrics without
changing the training run."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.data.loader import build_image_source
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.methods import build_method
from pixelssl.train.loop import pretrain
from pixelssl.train.monitor import Monitor, build_monitor, collapse_indicators

TINY = [
    "model.backbone=resnet18", "model.proj_hidden_dim=32", "model.proj_dim=16",
    "data.image_size=64", "data.synthetic.num_images=16", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=4", "train.optimizer=sgd", "train.base_lr=0.5", "train.warmup_steps=1",
    "train.log_every=1", "train.tensorboard=false", "train.progress=false", "train.amp=fp32",
    "train.monitor_images=4", "train.monitor_image_size=64",
]


def tiny_config(tmp_path: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[*TINY, f"run.output_dir={tmp_path}", *extra])


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one thread each."""


class Records:
    """A MetricsWriter stand-in that keeps what the monitor writes."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def write(self, step: int, record: dict) -> None:
        self.rows.append((step, record))


class ConstantBackbone(nn.Module):
    """Every cell of every image gets the same feature vector: complete collapse."""

    channels = {"c5": 8}

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.rand(1, 8, 1, 1) + 0.5)

    def forward_levels(self, x: torch.Tensor, levels: tuple[str, ...] = ("c5",)) -> dict[str, torch.Tensor]:
        return {"c5": self.value.expand(x.shape[0], 8, x.shape[-2] // 32, x.shape[-1] // 32)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_levels(x)["c5"]


class Collapsed(nn.Module):
    """A method whose backbone and dense projector map everything to one point."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ConstantBackbone()
        self.dense_projector = nn.Conv2d(8, 4, 1)


def tiny_monitor(tmp_path: Path) -> tuple[PretrainConfig, Monitor]:
    cfg = tiny_config(tmp_path, "train.monitor_every=1")
    return cfg, Monitor(cfg, build_image_source(cfg.data), torch.device("cpu"))


def test_constant_features_are_flagged_as_collapse(tmp_path, caplog):
    _, monitor = tiny_monitor(tmp_path)
    records = Records()
    with caplog.at_level(logging.WARNING, logger="pixelssl.train.monitor"):
        monitor.write(7, Collapsed(), records)
    (step, record), = records.rows
    assert step == 7
    assert record["monitor/cos_across_images"] == pytest.approx(1.0)
    assert record["monitor/cos_within_image"] == pytest.approx(1.0)
    assert record["monitor/feature_std"] == pytest.approx(0.0, abs=1e-6)
    assert record["monitor/effective_rank"] == pytest.approx(1.0, abs=1e-3)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "collapsing" in warned
    for indicator in ("cos across images", "normalised-feature std", "C5 effective rank"):
        assert indicator in warned


def test_a_collapse_is_warned_once_while_it_lasts(tmp_path, caplog):
    _, monitor = tiny_monitor(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pixelssl.train.monitor"):
        monitor.write(1, Collapsed(), Records())
        first = len(caplog.records)
        monitor.write(2, Collapsed(), Records())
    assert first == 3 and len(caplog.records) == first


def test_indicators_equal_a_direct_computation(tmp_path):
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    method = build_method(cfg).eval()
    views = torch.randn(3, 3, 96, 96)
    values, dim = collapse_indicators(method, views)

    with torch.no_grad():
        c5 = method.backbone(views)  # (3, 512, 3, 3)
        projected = method.projector(c5).double()  # PixPro: the projector on C5
        c5 = c5.double()
    cells = [projected[b].flatten(1).T for b in range(3)]  # per image: (9, D)
    within = [F.cosine_similarity(c[i], c[j], dim=0) for c in cells for i, j in itertools.permutations(range(9), 2)]
    across = [F.cosine_similarity(cells[a][i], cells[b][j], dim=0)
              for a, b in itertools.permutations(range(3), 2) for i in range(9) for j in range(9)]
    unit = F.normalize(torch.cat(cells), dim=1)
    s = torch.linalg.svdvals(torch.cat([c5[b].flatten(1).T for b in range(3)]))
    p = s / s.sum()

    assert dim == 16
    assert values["cos_within_image"] == pytest.approx(float(torch.stack(within).mean()), abs=1e-6)
    assert values["cos_across_images"] == pytest.approx(float(torch.stack(across).mean()), abs=1e-6)
    assert values["feature_std"] == pytest.approx(float(unit.std(dim=0).mean()), abs=1e-6)
    assert values["effective_rank"] == pytest.approx(math.exp(float(-(p * p.log()).sum())), rel=1e-6)


def test_a_method_without_dense_projector_is_read_at_c5_and_says_so(tmp_path):
    cfg = tiny_config(tmp_path, "method.name=moco", "method.queue_size=8")
    values, dim = collapse_indicators(build_method(cfg).eval(), torch.randn(2, 3, 64, 64))
    assert dim == 512
    assert set(values) == {"c5_cos_within_image", "c5_cos_across_images", "c5_feature_std", "effective_rank"}


def test_a_monitor_changes_no_state_and_repeats_its_values(tmp_path):
    cfg, monitor = tiny_monitor(tmp_path)
    method = build_method(cfg).train()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    flags = [m.training for m in method.modules()]
    rng = torch.get_rng_state()
    first, second = monitor.measure(method), monitor.measure(method)
    assert first == second and 0 <= first["monitor/probe_miou"] <= 1
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in method.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in method.state_dict().items())  # BatchNorm buffers included


@pytest.mark.parametrize("method", [["method.name=pixpro"],
                                    ["method.name=moco", "method.queue_size=8", "method.shuffle_bn_groups=2"]])
def test_a_run_with_monitors_ends_bit_identical_to_one_without(tmp_path, method):
    common = ["train.max_steps=3", *method]
    plain = pretrain(tiny_config(tmp_path, "run.name=plain", *common))
    watched = pretrain(tiny_config(tmp_path, "run.name=watched", "train.monitor_every=1", *common))
    a = load_checkpoint(plain.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(watched.run_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def losses(run_dir: Path) -> list:
        return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]

    assert losses(plain.run_dir) == losses(watched.run_dir) and len(losses(plain.run_dir)) == 3


def test_metrics_hold_the_monitor_keys_every_n_steps_and_at_the_end(tmp_path):
    run = pretrain(tiny_config(tmp_path, "train.max_steps=3", "train.monitor_every=2")).run_dir
    monitors = [r for r in read_metrics(run / "metrics.jsonl") if "monitor/probe_miou" in r]
    assert [r["step"] for r in monitors] == [2, 3]
    for record in monitors:
        assert {"monitor/cos_across_images", "monitor/cos_within_image", "monitor/feature_std",
                "monitor/effective_rank", "monitor/probe_miou", "monitor/seconds"} <= set(record)
        assert "loss" not in record  # a record of its own beside the training record of that step


def test_a_bad_monitor_data_path_stops_before_training(tmp_path):
    cfg = tiny_config(tmp_path, "train.max_steps=2", "train.monitor_every=1", f"train.monitor_data={tmp_path}/none")
    with pytest.raises(ConfigError, match=r"config key 'train.monitor_data': .*none is not a folder"):
        pretrain(cfg)
    assert not list(tmp_path.rglob("*.pt"))


def test_only_rank_0_monitors_but_every_rank_checks_the_data(tmp_path):
    cfg = tiny_config(tmp_path, "train.monitor_every=1")
    source, cpu = build_image_source(cfg.data), torch.device("cpu")
    assert isinstance(build_monitor(cfg, source, cpu, is_main=True), Monitor)
    assert build_monitor(cfg, source, cpu, is_main=False) is None
    assert build_monitor(tiny_config(tmp_path), source, cpu, is_main=True) is None  # monitor_every=0: off
    with pytest.raises(ConfigError, match="train.monitor_data"):
        build_monitor(tiny_config(tmp_path, "train.monitor_every=1", "train.monitor_data=/nonexistent"), source, cpu,
                      is_main=False)


def test_a_failing_monitor_warns_once_and_switches_off(tmp_path, caplog):
    _, monitor = tiny_monitor(tmp_path)
    records = Records()
    with caplog.at_level(logging.WARNING, logger="pixelssl.train.monitor"):
        monitor.write(1, nn.Linear(2, 2), records)  # no backbone: the measurement raises
        monitor.write(2, nn.Linear(2, 2), records)
    assert not records.rows and not monitor.enabled
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["train.monitor_every: monitor failed at step 1"]


def test_monitor_keys_are_validated():
    for bad in ("train.monitor_every=-1", "train.monitor_images=1", "train.monitor_image_size=16"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(PretrainConfig, overrides=[bad])
    assert load_config(PretrainConfig).train.monitor_every == 0
