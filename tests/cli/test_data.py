"""cli.data: ``pixelssl data export-coco`` and ``coco-subset`` write their files; errors are one line."""

from __future__ import annotations

import pytest

from pixelssl.cli import main
from pixelssl.data.coco import coco_subset, read_coco_json, write_coco_json
from pixelssl.errors import PixelSSLError


def _image_ids(subset):
    return {image["id"] for image in subset["images"]}


def test_export_cli_writes_both_splits(tmp_path):
    assert main(["data", "export-coco", "--out", str(tmp_path / "c"), "--images", "4", "--size", "32"]) == 0
    assert len(read_coco_json(tmp_path / "c" / "train.json")["images"]) == 4
    assert len(read_coco_json(tmp_path / "c" / "val.json")["images"]) == 1


def test_subset_cli_and_bad_fraction(tmp_path, capsys, fake_coco):
    write_coco_json(fake_coco(50), tmp_path / "train.json")
    out = tmp_path / "sub.json"
    assert main(["data", "coco-subset", str(tmp_path / "train.json"), "--fraction", "0.1", "--seed", "3",
                 "--out", str(out)]) == 0
    assert _image_ids(read_coco_json(out)) == _image_ids(coco_subset(fake_coco(50), 0.1, 3))
    with pytest.raises(PixelSSLError, match=r"fraction must be in \(0, 1\]"):
        coco_subset(fake_coco(5), 1.5)
    assert main(["data", "coco-subset", str(tmp_path / "train.json"), "--fraction", "0", "--out", str(out)]) == 1
    assert "error: subset fraction must be in (0, 1] (got 0.0)" in capsys.readouterr().err
