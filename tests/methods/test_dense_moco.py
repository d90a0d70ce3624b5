"""methods.dense_moco: the MoCo-v2(+) core of DenseCL and PixCon: the loss against a hand-written reference, the two
queues, the symmetric switch; DenseCL and the PixCon variants end to end (presets, CLI, an image folder, exact resume,
one-line errors for bad settings)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pixelssl.cli import main
from pixelssl.config import ConfigError, PretrainConfig, load_config
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.engine.logger import read_metrics
from pixelssl.train.loop import pretrain

PRESETS = ["densecl_r18_demo", "pixcon_coord_r18_demo", "pixcon_sim_r18_demo", "pixcon_sr_r18_demo"]
TINY = [
    "model.proj_hidden_dim=32", "model.proj_dim=16", "method.queue_size=12",
    "data.image_size=64", "data.synthetic.num_images=16", "data.synthetic.size=64", "data.num_workers=0",
    "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1", "train.tensorboard=false",
    "train.progress=false", "train.amp=fp32", "train.threads=1",
]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a / a.norm()) @ (b / b.norm()))


def _info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, t: float) -> float:
    pos = math.exp(float(query @ positive) / t)
    neg = sum(math.exp(float(query @ n) / t) for n in negatives)
    return -math.log(pos / (pos + neg))


def test_pixcon_sr_loss_equals_a_hand_written_reference(tiny_method, two_view_batch):
    method = tiny_method("pixcon_sr_r18_demo").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in two_view_batch(3, 96).items()}
    queue, dense_queue = method.queue.keys.clone(), method.dense_queue.keys.clone()
    out = method(batch)

    views = [batch["view1"], batch["view2"]]
    t, lam = 0.2, 0.5
    with torch.no_grad():  # network outputs from the modules; everything after them by hand
        feats = [method.backbone(v) for v in views]  # (B, C, 3, 3)
        feats_k = [method.backbone_k(v) for v in views]
        global_q = [method.predictor(method.projector(f.mean(dim=(2, 3)))) for f in feats]
        global_k = [method.projector_k(f.mean(dim=(2, 3))) for f in feats_k]
        dense_q = [method.dense_predictor(method.dense_projector(f)).flatten(2) for f in feats]
        dense_k = [method.dense_projector_k(f).flatten(2) for f in feats_k]
    total_global = total_dense = 0.0
    for a, b in [(0, 1), (1, 0)]:
        box_q, flip_q, box_k = batch[f"box{a + 1}"], batch[f"flip{a + 1}"], batch[f"box{b + 1}"]
        terms = []
        for img in range(3):
            q = F.normalize(global_q[a][img], dim=0)
            total_global += _info_nce(q, F.normalize(global_k[b][img], dim=0), queue, t) / 3
            bq, bk = feats[a][img].flatten(1), feats_k[b][img].flatten(1)  # (C, 9)
            sims = [[_cos(bq[:, i], bk[:, j]) for j in range(9)] for i in range(9)]
            best = [max(range(9), key=lambda j: row[j]) for row in sims]
            s = [row[j] for row, j in zip(sims, best)]
            x0, y0, x1, y1 = box_q[img].tolist()
            if flip_q[img]:
                x0, x1 = x1, x0
            centres = [(x0 + (j + 0.5) * (x1 - x0) / 3, y0 + (i + 0.5) * (y1 - y0) / 3) for i in range(3) for j in range(3)]
            kx0, ky0, kx1, ky1 = box_k[img].tolist()
            inside = [kx0 <= x <= kx1 and ky0 <= y <= ky1 for x, y in centres]
            low, high = min(s), max(v for v, ins in zip(s, inside) if not ins)
            weights = [1.0 if ins else ((v - low) / (high - low)) ** 2 for v, ins in zip(s, inside)]
            for i in range(9):
                q_i = F.normalize(dense_q[a][img][:, i], dim=0)
                k_j = F.normalize(dense_k[b][img][:, best[i]], dim=0)
                terms.append((weights[i], _info_nce(q_i, k_j, dense_queue, t)))
        assert 0 < sum(1 for w, _ in terms if w == 1.0) < len(terms)  # in-box and out-of-box queries both occur
        total_dense += sum(w * loss for w, loss in terms) / sum(w for w, _ in terms)
    expected = (1 - lam) * total_global + lam * total_dense
    assert math.isclose(out["loss_global"].item(), total_global, rel_tol=1e-9)
    assert math.isclose(out["loss_dense"].item(), total_dense, rel_tol=1e-9)
    assert math.isclose(out["loss"].item(), expected, rel_tol=1e-9)


def _pooled_dense_key(method, view: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(method.dense_projector_k(method.backbone_k(view)).mean(dim=(2, 3)), dim=1)


def _global_key(method, view: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return F.normalize(method.projector_k(method.backbone_k(view).mean(dim=(2, 3))), dim=1)


def test_both_queues_get_the_keys_of_one_random_view_per_step(tiny_method, two_view_batch):
    method = tiny_method("pixcon_sim_r18_demo", "method.queue_size=64")
    batch = two_view_batch(4, 64)
    picked = []
    for step in range(6):
        with torch.no_grad():
            method(batch)
        rows = slice(4 * step, 4 * step + 4)
        dense = [_pooled_dense_key(method, batch[f"view{v}"]) for v in (1, 2)]
        glob = [_global_key(method, batch[f"view{v}"]) for v in (1, 2)]
        view = next(v for v in (0, 1) if torch.allclose(method.dense_queue.keys[rows], dense[v], atol=1e-6))
        assert torch.allclose(method.queue.keys[rows], glob[view], atol=1e-6)  # same view in both queues
        assert torch.allclose(method.dense_queue.keys[rows].norm(dim=1), torch.ones(4))
        picked.append(view)
    assert set(picked) == {0, 1}


def test_dense_queue_wraps_around(tiny_method, two_view_batch):
    # DenseCL's recipe enqueues its key view (view 2) every step; 3 steps of 4 keys in a queue of 6.
    method = tiny_method("densecl_r18_demo", "method.queue_size=6", "method.shuffle_bn_groups=1")
    batches = [two_view_batch(4, size) for size in (64, 72, 80)]
    keys = []
    for batch in batches:
        with torch.no_grad():
            method(batch)
        keys.append(_pooled_dense_key(method, batch["view2"]))
    assert int(method.dense_queue.ptr) == int(method.queue.ptr) == 0  # 12 keys: twice round the queue
    expected = torch.cat([keys[1][2:], keys[2]])  # rows 0-1: step 2's last two, rows 2-5: step 3
    assert torch.allclose(method.dense_queue.keys, expected, atol=1e-6)


def _swapped(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[:-1] + {"1": "2", "2": "1"}[k[-1]]: v for k, v in batch.items()}


def test_symmetric_loss_adds_both_directions_and_asymmetric_keeps_view1_to_view2(tiny_method, two_view_batch):
    batch = two_view_batch(4, 64)
    both_ways = tiny_method("pixcon_sr_r18_demo")(batch)  # same seed: the three methods start equal
    one_way = tiny_method("pixcon_sr_r18_demo", "method.symmetric=false")(batch)
    other_way = tiny_method("pixcon_sr_r18_demo", "method.symmetric=false")(_swapped(batch))
    for part in ("loss_global", "loss_dense", "loss"):
        assert both_ways[part].item() == pytest.approx(one_way[part].item() + other_way[part].item(), rel=1e-5)


# ------------------------------------------------------------------------- the variants end to end
def _finite_losses(run_dir: Path) -> list[dict]:
    records = read_metrics(run_dir / "metrics.jsonl")
    for r in records:
        for key in ("loss", "loss_global", "loss_dense", "dense_weight"):
            assert math.isfinite(r[key]), (key, r)
    return records


@pytest.mark.parametrize("preset", PRESETS)
def test_each_variant_trains_from_the_cli(tmp_path, capsys, preset):
    rc = main(["pretrain", "--config", preset, *TINY, "train.max_steps=3", f"run.output_dir={tmp_path}",
               "run.name=cli"])
    assert rc == 0, capsys.readouterr().err
    assert "backbone:" in capsys.readouterr().out
    records = _finite_losses(tmp_path / "cli")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert (tmp_path / "cli" / "backbone.safetensors").is_file()


def test_sr_spatial_ablation_trains(tmp_path):
    cfg = load_config(PretrainConfig, "pixcon_sr_r18_demo",
                      [*TINY, "method.sr_weights=spatial", "train.max_steps=2", f"run.output_dir={tmp_path}"])
    records = _finite_losses(pretrain(cfg).run_dir)
    assert all(0 <= r["dense_weight"] <= 1 for r in records)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(folder / "sub" / f"{i}.png")
    return folder


@pytest.mark.parametrize("preset", PRESETS)
def test_each_variant_trains_on_an_image_folder(tmp_path, image_folder, preset):
    cfg = load_config(PretrainConfig, preset, [*TINY, f"data.root={image_folder}", "train.max_steps=2",
                                               f"run.output_dir={tmp_path}", "run.name=folder"])
    result = pretrain(cfg)
    assert result.skipped_files == 0
    assert len(_finite_losses(result.run_dir)) == 2


@pytest.mark.parametrize("preset", ["pixcon_sr_r18_demo", "densecl_r18_demo"])
def test_resume_is_bit_identical(tmp_path, preset):
    # 4 keys a step into queues of 6: the resumed run must also continue the queue pointers and contents.
    common = [*TINY, "method.queue_size=6", "train.max_steps=4", "train.checkpoint_every=2",
              "train.keep_checkpoints=5", f"run.output_dir={tmp_path}"]
    full = pretrain(load_config(PretrainConfig, preset, [*common, "run.name=full"]))

    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(full.run_dir / "checkpoints" / "step_00000002.pt", resumed_dir / "checkpoints" / "last.pt")
    torch.manual_seed(1234)  # the resumed run must restore its own RNG state (random view to enqueue, shuffled BN)
    pretrain(resume=resumed_dir)

    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    assert {"queue.keys", "queue.ptr", "dense_queue.keys", "dense_queue.ptr"} <= a.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["step"] for r in read_metrics(resumed_dir / "metrics.jsonl")] == [3, 4]


@pytest.mark.parametrize("override,key", [
    ("method.queue_size=0", "method.queue_size"),
    ("method.sr_weights=similarity", "method.sr_weights"),
    ("method.sr_power=0", "method.sr_power"),
    ("method.loss_lambda=1.5", "method.loss_lambda"),
])
def test_bad_method_settings_are_named_in_one_line(override, key):
    with pytest.raises(ConfigError, match=key) as info:
        load_config(PretrainConfig, "pixcon_sr_r18_demo", [override])
    assert "\n" not in str(info.value)


def test_cli_reports_a_missing_queue_in_one_line(tmp_path, capsys):
    rc = main(["pretrain", "--config", "densecl_r18_demo", "method.queue_size=0", f"run.output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err == ["error: config key 'method.queue_size': densecl takes its negatives from a queue: set it >= 1 "
                   "(65536 in the paper, 4096 in the demo presets)"]
