"""pixelssl.io: files written whole or not at all, safetensors with metadata, atomic links."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pixelssl.io import atomic_link, atomic_write, save_weights, sha256_file


def _leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".tmp" in name)


def test_text_bytes_and_writer_functions(tmp_path):
    assert atomic_write(tmp_path / "a.txt", "grüße\n").read_text(encoding="utf-8") == "grüße\n"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "c.pt", lambda handle: torch.save({"x": torch.arange(3)}, handle))
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["x"], torch.arange(3))
    atomic_write(tmp_path / "a.txt", "replaced")
    assert (tmp_path / "a.txt").read_text() == "replaced" and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path):
    path = atomic_write(tmp_path / "eval.json", "old")

    def fails(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


def test_save_weights_detaches_and_keeps_the_metadata(tmp_path):
    weight = torch.randn(2, 3, requires_grad=True)
    path = save_weights({"w": weight.t()}, tmp_path / "m.safetensors", metadata={"pixelssl": '{"a": 1}'})
    assert torch.equal(load_file(path)["w"], weight.detach().t())
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"pixelssl": '{"a": 1}'}
    assert _leftovers(tmp_path) == []


def test_atomic_link_names_the_same_contents_and_replaces_an_older_link(tmp_path):
    first, second = atomic_write(tmp_path / "one", b"1"), atomic_write(tmp_path / "two", b"2")
    atomic_link(first, tmp_path / "last")
    atomic_link(second, tmp_path / "last")
    assert (tmp_path / "last").read_bytes() == b"2" and _leftovers(tmp_path) == []


def test_sha256_file(tmp_path):
    path = atomic_write(tmp_path / "x", b"abc" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
