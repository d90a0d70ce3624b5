"""models.safe_load: weights files told apart by their bytes, read without running pickled code, one-line errors."""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pixelssl.errors import WeightsFileError
from pixelssl.models.safe_load import ARGPARSE_NAMESPACE, file_kind, load_numpy_pickle, load_torch, load_weights_file


class _Payload:
    """What a malicious file pickles: a call to os.system when unpickled."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_kind_of_a_file_comes_from_its_first_bytes(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    (tmp_path / "a.safetensors").rename(tmp_path / "renamed.bin")  # the header, not the suffix, says safetensors
    torch.save({"w": torch.zeros(2)}, tmp_path / "zip.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    (tmp_path / "d2.pkl").write_bytes(pickle.dumps({"model": {}}, protocol=2))
    assert [file_kind(tmp_path / n) for n in ("renamed.bin", "zip.pt", "legacy.pth", "d2.pkl")] == [
        "safetensors", "torch", "torch", "pickle"]
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello weights")
    for name, message in (("missing.pt", "does not exist"), ("empty.pt", "is empty"), ("notes.txt", "is not a weights file")):
        with pytest.raises(WeightsFileError, match=message) as info:
            file_kind(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("zipfile", [True, False])
def test_pickled_code_in_a_torch_file_is_refused_naming_the_global_and_never_runs(tmp_path, zipfile):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(WeightsFileError) as info:
        load_torch(path)
    message = str(info.value)
    assert message.startswith(f"refused: {path} holds pickled code (posix.system)") and "\n" not in message
    assert "weights_only" not in message and not marker.exists()


def test_types_a_caller_names_are_let_through(tmp_path):
    path = tmp_path / "pixpro.pth"
    torch.save({"opt": argparse.Namespace(arch="resnet18"), "model": {"w": torch.ones(1)}}, path)
    with pytest.raises(WeightsFileError, match=r"argparse\.Namespace"):
        load_torch(path)
    state = load_torch(path, allowed=ARGPARSE_NAMESPACE)
    assert state["opt"].arch == "resnet18" and torch.equal(state["model"]["w"], torch.ones(1))


def test_numpy_pickles_load_their_arrays_and_refuse_everything_else(tmp_path):
    path = tmp_path / "d2.pkl"
    path.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": np.arange(3, dtype=np.float32)}}, protocol=2))
    assert load_numpy_pickle(path)["model"]["stem.conv1.weight"].tolist() == [0.0, 1.0, 2.0]
    marker = tmp_path / "ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"model": {}, "x": _Payload(marker)}))
    with pytest.raises(WeightsFileError, match=r"holds pickled code \(posix\.system\)"):
        load_numpy_pickle(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_a_plain_pickle_is_read_only_when_asked_for_and_truncated_files_are_one_line(tmp_path):
    path = tmp_path / "d2.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": np.zeros(2)}}, protocol=4))
    with pytest.raises(WeightsFileError, match="is a plain pickle, not a torch checkpoint .*--from detectron2"):
        load_weights_file(path)
    assert load_weights_file(path, pickles=True)["model"]["a"].tolist() == [0.0, 0.0]
    save_file({"w": torch.zeros(64)}, str(tmp_path / "w.safetensors"))
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    torch.save({"w": torch.zeros(64)}, tmp_path / "w.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:200])
    for name in ("cut.safetensors", "cut.pt"):
        with pytest.raises(WeightsFileError, match="truncated") as info:
            load_weights_file(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
