"""cli.export: ``pixelssl export`` prints the written paths; its errors are one line."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from pixelssl.cli import main


def test_cli_export_and_one_line_errors(fpn_run, tmp_path, capsys):
    out = tmp_path / "r18.pkl"
    assert main(["export", str(fpn_run), "--to", "detectron2", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)  # log lines may come first
    save_file({"encoder.weight": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    cases = [
        ([str(tmp_path / "nothing")], "is neither a run directory nor a weights file"),
        ([str(fpn_run), "--out", str(tmp_path / "x.pth")], "must end in .pkl"),
        ([str(tmp_path / "other.safetensors")], "does not hold a torchvision ResNet"),
        ([str(tmp_path)], "has no config.yaml"),
    ]
    for args, message in cases:
        assert main(["export", *args[:1], "--to", "detectron2", *args[1:]]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
