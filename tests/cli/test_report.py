"""cli.report: ``pixelssl report`` writes report.html into the run or --out, expands a demo folder; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from pixelssl.cli import main


def test_cli_writes_the_report_into_the_run_and_expands_a_demo_folder(runs, tmp_path, capsys):
    assert main(["report", str(runs["pixpro"]), "--images", "0"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]  # the last line is the path (logging comes before)
    assert Path(printed) == (runs["pixpro"] / "report.html").resolve()
    demo = tmp_path / "demo"
    demo.mkdir()
    rows = [{"method": "random init", "steps": 0, "pretrain_s": 0.0, "first_loss": None, "final_loss": None,
             "miou": 0.25, "pixel_acc": 0.6, "run": None},
            {"method": "PixPro", "steps": 2, "pretrain_s": 3.0, "first_loss": 0.1, "final_loss": -0.5, "miou": 0.3,
             "pixel_acc": 0.7, "run": str(runs["pixpro"])},
            {"method": "hand-edited", "miou": "n/a"}]  # a damaged row shows dashes, not a traceback
    (demo / "results.json").write_text(json.dumps({"date": "2026-11-25", "seconds": 60, "rows": rows,
                                                   "budget": {"steps": 2, "probe_train": 4, "probe_val": 2}}))
    out = tmp_path / "demo.html"
    assert main(["report", str(demo), "--out", str(out), "--images", "0"]) == 0
    text = out.read_text()
    assert '<p class="note">no figures requested (images=0)</p>' in text
    assert "Demo: method comparison" in text and "30.0" in text and "-0.500" in text and "hand-edited" in text
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["report", str(demo / ".."), "--images", "-1"]) == 1
