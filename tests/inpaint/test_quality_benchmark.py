"""benchmarks/inpaint_quality.py --quick on a tiny synthetic folder: rows, resumption, a larger budget, the tables."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _folder(root: Path, count: int, seed: int) -> None:
    """Smooth random pictures (a gradient plus blobs), 80 x 72, as PNGs."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    y, x = np.mgrid[0:72, 0:80] / 80.0
    for n in range(count):
        base = rng.random(3)[:, None, None] * (1 - y) + rng.random(3)[:, None, None] * x
        for _ in range(3):
            cy, cx, r = rng.random() * 0.9, rng.random(), 0.1 + 0.2 * rng.random()
            base = np.where((y - cy) ** 2 + (x - cx) ** 2 < r ** 2, rng.random(3)[:, None, None], base)
        Image.fromarray((base.transpose(1, 2, 0) * 255).astype(np.uint8)).save(root / f"{n:02d}.png")


@pytest.fixture
def quick_camvid(tmp_path) -> tuple[list[str], Path, Path]:
    """A tiny CamVid-shaped folder, and the benchmark's --quick arguments with its results and runs folders."""
    camvid, results, runs = tmp_path / "camvid", tmp_path / "results", tmp_path / "runs"
    _folder(camvid / "train" / "images", 4, 0)
    _folder(camvid / "val" / "images", 3, 1)
    return ["--quick", "--camvid", str(camvid), "--results", str(results), "--runs", str(runs)], results, runs


def _rows(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "inpaint_quality.jsonl").read_text().splitlines()]


def test_quick_benchmark_measures_resumes_and_extends_a_budget(load_script, quick_camvid, capsys):
    bench = load_script(REPO / "benchmarks" / "inpaint_quality.py")
    common, results, runs = quick_camvid

    bench.main(common)
    rows = _rows(results)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("calibration") == 2 and kinds.count("classical") == 2 and kinds.count("chunk") == 4
    chunks = {m: [r for r in rows if r["kind"] == "chunk" and r["model"] == m] for m in ("full", "no_ca")}
    for curve in chunks.values():
        assert [r["chunk"] for r in curve] == [1, 2] and curve[0]["steps"] < curve[1]["steps"]
        assert curve[0]["cpu_min"] <= curve[1]["cpu_min"]
        for kind in ("large", "freeform"):
            metrics = curve[-1]["metrics"][kind]
            assert {"hole_psnr", "hole_ssim", "hole_l1", "psnr", "ssim", "seconds_per_image"} <= set(metrics)
            assert len(curve[-1]["per_image"][kind]["hole_psnr"]) == 3 and curve[-1]["images"] == 3
    dirs = sorted(p.name for p in runs.iterdir())
    assert len(dirs) == 2 and dirs[0].startswith("full_") and dirs[1].startswith("no_ca_")
    snapshots = sorted(p.name for p in (runs / dirs[0] / "generators").iterdir())
    assert snapshots == [f"step_{r['steps']:08d}.safetensors" for r in chunks["full"]]
    table = (results / "inpaint_quality.md").read_text()
    assert "Goal:" in table and "free-form strokes" in table and "In progress" not in table
    summary = json.loads((results / "inpaint_quality.json").read_text())
    assert len(summary["curve"]["full"]) == 2 and len(summary["goals"]) == 6
    capsys.readouterr()

    bench.main(common)  # everything measured: nothing is trained or measured again
    assert len(_rows(results)) == len(rows)
    assert "0 row(s) measured" in capsys.readouterr().out

    bench.main([*common, "--minutes", "0.1"])  # a larger budget extends the same runs
    more = _rows(results)[len(rows):]
    assert sorted(p.name for p in runs.iterdir()) == dirs
    for model, curve in chunks.items():
        extended = max(r["steps"] for r in more if r.get("model") == model)
        assert extended > curve[-1]["steps"]
        assert any(r.get("model") == model for r in more)
    assert not [r for r in more if r["kind"] == "calibration"]  # the step times are reused

    bench.main([*common, "--table", "--plot"])
    pytest.importorskip("matplotlib")
    assert (results / "inpaint_quality.png").stat().st_size > 0


def test_a_second_discount_trains_only_the_full_model_and_is_compared_with_the_release_one(load_script, quick_camvid):
    bench = load_script(REPO / "benchmarks" / "inpaint_quality.py")
    common, results, runs = quick_camvid
    bench.main(common)
    assert "Spatial discount" not in (results / "inpaint_quality.md").read_text()
    before = _rows(results)

    bench.main([*common, "--gamma", "0.99", "--models", "full"])
    new = _rows(results)[len(before):]
    assert {r.get("model") for r in new} == {"full"}  # the no-attention model is neither timed nor trained again
    assert [r["kind"] for r in new].count("calibration") == 1 and [r["kind"] for r in new].count("chunk") == 2
    assert len([p for p in runs.iterdir() if p.name.startswith("full_")]) == 2
    table = (results / "inpaint_quality.md").read_text()
    assert "discount 0.9:" in table  # the main tables stay those of the release discount
    assert "| 0.9 (release) | 2/2 |" in table and "| 0.99 | 2/2 |" in table
    assert "| 0.99 | 1 |" in table and "| 0.99 | 2 |" in table  # and chunk by chunk
    summary = json.loads((results / "inpaint_quality.json").read_text())
    assert summary["settings"]["train"]["gamma"] == 0.9
    default, paper = summary["discount"]
    assert (default["gamma"], paper["gamma"]) == (0.9, 0.99) and default["large_hole_psnr_vs_default"] is None
    diff = paper["large_hole_psnr_vs_default"]
    assert diff["low"] <= diff["mean"] <= diff["high"]


def test_discounts_are_compared_at_the_last_chunk_every_run_has_reached(load_script, tmp_path):
    bench = load_script(REPO / "benchmarks" / "inpaint_quality.py")
    args = bench.parse_args(["--results", str(tmp_path), "--runs", str(tmp_path / "runs")])
    ekey = bench.key_of(bench.eval_settings(args))

    def chunk(gamma, number, psnr):
        metrics = {kind: {"hole_psnr": psnr, "hole_ssim": 0.5} for kind in bench.HOLES}
        per_image = {kind: {"hole_psnr": [psnr, psnr + 1, psnr + 2], "hole_ssim": [0.5, 0.5, 0.6]} for kind in bench.HOLES}
        return {"kind": "chunk", "model": "full", "train_key": bench.train_key("full", bench.with_gamma(args, gamma)),
                "eval_key": ekey, "chunk": number, "chunks": 6, "steps": 10 * number, "cpu_min": number, "metrics": metrics,
                "per_image": per_image}

    rows = [chunk(0.9, 1, 10.0), chunk(0.9, 2, 11.0), chunk(0.9, 3, 12.0), chunk(0.99, 1, 10.5), chunk(0.99, 2, 13.0)]
    found, lines = bench.discount_comparison(rows, bench.with_gamma(args, 0.9))
    assert [(f["gamma"], f["chunk"]) for f in found] == [(0.9, 2), (0.99, 2)]  # not the default's chunk 3
    assert found[1]["large_hole_psnr_vs_default"]["mean"] == pytest.approx(2.0)  # 13 - 11, image by image
    assert "all scored at chunk 2" in lines[0]
    assert [p["vs_default"]["large_hole_psnr"]["mean"] for p in found[1]["curve"]] == pytest.approx([0.5, 2.0])
    assert "| 0.99 | 1 | 1.0 | +0.50 [+0.50, +0.50] |" in "\n".join(lines)
    assert bench.discount_comparison(rows[:3], bench.with_gamma(args, 0.9)) == ([], [])  # one discount: no section


def test_tables_of_an_empty_results_folder_say_nothing_is_measured(load_script, tmp_path, capsys):
    bench = load_script(REPO / "benchmarks" / "inpaint_quality.py")
    bench.main(["--table", "--results", str(tmp_path), "--camvid", str(tmp_path / "absent")])
    out = capsys.readouterr().out
    assert "not calibrated yet" in out and "In progress" in out
    assert (tmp_path / "inpaint_quality.md").is_file() and (tmp_path / "inpaint_quality.json").is_file()


def test_missing_camvid_is_one_line(load_script, tmp_path):
    bench = load_script(REPO / "benchmarks" / "inpaint_quality.py")
    with pytest.raises(SystemExit, match="CamVid not found"):
        bench.main(["--quick", "--camvid", str(tmp_path / "absent"), "--results", str(tmp_path / "r"),
                    "--runs", str(tmp_path / "runs")])
