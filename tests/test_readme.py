"""The README's building-block snippet runs as written, at a small size (same names, same calls)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
# The snippet's sizes, scaled down: (text in the README, text it runs with). Each must be in the snippet.
SMALLER = [("resnet50()", "resnet18()"), ("feature_dim=2048", "feature_dim=512"), ("TwoViews(224)", "TwoViews(64)"),
           ("DataLoader(data, 64,", "DataLoader(data, 2,")]


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("### From your own code"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_building_block_snippet_trains(tmp_path, monkeypatch):
    code = _snippet()
    for old, new in SMALLER:
        assert old in code, f"the README snippet no longer contains {old!r}: update this test with it"
        code = code.replace(old, new)
    folder = tmp_path / "images" / "unlabelled"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(4):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    with torch.random.fork_rng(devices=[]):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["step"] == 1 and torch.isfinite(namespace["loss"])  # 4 images, batches of 2
    assert namespace["loss"].requires_grad


@pytest.mark.parametrize("name", ["PixPro", "TwoViews", "collate_views"])
def test_the_snippet_uses_public_names(name):
    import pixelssl

    assert f"pixelssl.{name}" in _snippet() and name in pixelssl.__all__
