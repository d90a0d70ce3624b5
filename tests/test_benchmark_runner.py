"""benchmarks/run_all.py (`make bench`): its options, and that --quick never writes over the measured tables."""

import subprocess
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_runs_the_chosen_scripts_with_their_tables_in_a_temporary_folder(load_script, monkeypatch):
    run_all = load_script(BENCHMARKS / "run_all.py")
    calls = []

    def fake_run(argv, env):
        calls.append((Path(argv[1]).name, argv[2:], env.get("PIXELSSL_BENCH_RESULTS")))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    assert run_all.main(["--quick", "--only", "queue_loss.py", "augment_speed.py"]) == 0
    assert [(name, args) for name, args, _ in calls] == [("queue_loss.py", ["--quick"]), ("augment_speed.py", [])]
    folder = calls[0][2]
    assert folder and Path(folder).is_dir() and Path(folder) != BENCHMARKS / "results"

    calls.clear()
    monkeypatch.delenv("PIXELSSL_BENCH_RESULTS", raising=False)
    assert run_all.main(["--only", "queue_loss.py"]) == 0  # a full run writes the real tables
    assert calls == [("queue_loss.py", [], None)]


def test_a_failing_script_fails_the_run_and_an_unknown_option_is_refused(load_script, monkeypatch):
    run_all = load_script(BENCHMARKS / "run_all.py")
    monkeypatch.setattr(run_all.subprocess, "run", lambda argv, env: subprocess.CompletedProcess(argv, 1))
    assert run_all.main(["--only", "queue_loss.py"]) == 1
    with pytest.raises(SystemExit):
        run_all.main(["--bogus"])


def test_results_folder_follows_the_environment(load_script, monkeypatch, tmp_path):
    monkeypatch.setenv("PIXELSSL_BENCH_RESULTS", str(tmp_path))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    common = load_script(BENCHMARKS / "common.py")
    assert common.RESULTS == tmp_path
    common.write_results("probe_table", {"x": 1}, "| a |")
    assert (tmp_path / "probe_table.json").is_file() and (tmp_path / "probe_table.md").read_text() == "| a |\n"
    assert load_script(BENCHMARKS / "augment_speed.py").RESULTS == tmp_path  # the scripts that write their own JSON follow it too
    monkeypatch.delenv("PIXELSSL_BENCH_RESULTS")
    common = load_script(BENCHMARKS / "common.py")
    assert common.RESULTS == BENCHMARKS / "results"
    common.write_results("probe_table", {"x": 1}, "| a |", quick=True)  # a smoke test never writes the real tables
    assert not (common.RESULTS / "probe_table.json").exists() and not (common.RESULTS / "probe_table.md").exists()


def test_a_case_can_run_on_an_earlier_checkouts_package(load_script, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    common = load_script(BENCHMARKS / "common.py")
    (tmp_path / "tree" / "pixelssl").mkdir(parents=True)
    (tmp_path / "tree" / "pixelssl" / "__init__.py").write_text("MARK = 'earlier checkout'\n")
    case = tmp_path / "case.py"
    case.write_text("import json, pixelssl\nprint(json.dumps({'mark': getattr(pixelssl, 'MARK', 'this one')}))\n")
    assert common.run_isolated(case, [], package_tree=tmp_path / "tree") == {"mark": "earlier checkout"}
    assert common.run_isolated(case, []) == {"mark": "this one"}


def test_demo_step_before_after_table_compares_with_the_earlier_default(load_script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    demo_step = load_script(BENCHMARKS / "demo_step.py")
    rates = {"matmul_gflops": 180.0, "eager": {"gflops": 120.0, "fraction_of_matmul": 120 / 180}}
    payload = {"baseline": {"commit": "abc1234", "rates": {**rates, "eager": {"gflops": 90.0, "fraction_of_matmul": 0.5}}},
               "rates": rates,
               "runs": {"before (abc1234)": {"step_s": 1.5, "final_loss": -2.3},
                        demo_step.AS_BEFORE: {"step_s": 1.2, "final_loss": -2.3},
                        "default": {"error": "out of memory"}}}
    text = "\n".join(demo_step.before_after(payload))
    assert "| before (abc1234) | 1.500 | 1.00x | -2.30000 |" in text
    assert f"| {demo_step.AS_BEFORE} | 1.200 | 1.25x | -2.30000 |" in text
    assert "| default | failed: out of memory | | |" in text
    assert "before 50% (90 of 180 GFLOP/s), after 67% (120 of 180 GFLOP/s)" in text
