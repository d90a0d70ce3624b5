"""engine.checkpoint: checksums verified, fallback past corrupt files, rotation, failed writes lose nothing, no pickled code."""

from __future__ import annotations

import errno
import logging
import os
import pickle

import pytest
import torch

from pixelssl.engine.checkpoint import (
    CheckpointError,
    last_checkpoint_note,
    load_checkpoint,
    load_newest_valid,
    save_checkpoint,
    step_checkpoints,
)
from pixelssl.io import sha256_file


def _state(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((4,), float(step))}}


def _write_steps(folder, steps, keep=10):
    for step in steps:
        save_checkpoint(folder, _state(step), step, keep)


def test_checksum_recorded_and_verified(tmp_path):
    _write_steps(tmp_path, [1])
    sidecar = tmp_path / "step_00000001.pt.sha256"
    assert sidecar.read_text().split()[0] == sha256_file(tmp_path / "step_00000001.pt")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 1 and state["versions"]["torch"] == torch.__version__


def test_flipped_byte_is_detected(tmp_path):
    _write_steps(tmp_path, [1])
    path = tmp_path / "step_00000001.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # a bit flip torch.load might not notice on its own
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_truncated_newest_falls_back_to_previous(tmp_path, caplog):
    _write_steps(tmp_path, [1, 2, 3])
    newest = tmp_path / "step_00000003.pt"
    size = newest.stat().st_size
    with open(newest, "r+b") as handle:  # truncates last.pt too: it is a hard link to the same file
        handle.truncate(size // 3)
    with caplog.at_level(logging.WARNING):
        state, path = load_newest_valid(tmp_path)
    assert state["step"] == 2 and path.name == "step_00000002.pt"
    assert "corrupt" in caplog.text and "older checkpoint" in caplog.text


def test_no_usable_checkpoint_is_one_clear_error(tmp_path):
    _write_steps(tmp_path, [1])
    (tmp_path / "step_00000001.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no usable checkpoint") as exc:
        load_newest_valid(tmp_path)
    assert "\n" not in str(exc.value)


def test_rotation_removes_checksums_too(tmp_path):
    _write_steps(tmp_path, [1, 2, 3], keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.pt", "step_00000002.pt", "step_00000002.pt.sha256", "step_00000003.pt", "step_00000003.pt.sha256"]


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _write_steps(tmp_path, [1])
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")  # some of the file got out before the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="disk is full"):
        save_checkpoint(tmp_path, _state(2), 2, keep=10)
    monkeypatch.setattr(torch, "save", real_save)
    assert not list(tmp_path.glob(".*tmp*")) and not (tmp_path / "step_00000002.pt").exists()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused for safety"):
        load_checkpoint(path, verify=False)
    assert not (tmp_path / "PWNED").exists()
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(_Exploit(), handle)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pkl", verify=False)
    assert not (tmp_path / "PWNED").exists()


def test_last_pt_is_the_newest_step_file_and_numbered_files_are_listed_oldest_first(tmp_path):
    _write_steps(tmp_path, [3, 12, 7])
    (tmp_path / "step_notes.pt").write_bytes(b"")  # not a numbered checkpoint
    assert step_checkpoints(tmp_path) == [(3, tmp_path / "step_00000003.pt"), (7, tmp_path / "step_00000007.pt"),
                                          (12, tmp_path / "step_00000012.pt")]
    assert os.path.samefile(tmp_path / "last.pt", tmp_path / "step_00000007.pt")  # the last written, by a hard link
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 7


def test_the_note_of_a_stopped_run_names_its_last_checkpoint(tmp_path):
    assert last_checkpoint_note(tmp_path) == "no checkpoint was written yet"
    _write_steps(tmp_path, [1])
    assert last_checkpoint_note(tmp_path) == f"last good checkpoint: {tmp_path / 'last.pt'}"


def test_a_checkpoint_copied_without_its_checksum_loads_with_a_warning(tmp_path, caplog):
    _write_steps(tmp_path / "run", [1])
    copy = tmp_path / "copied.pt"
    copy.write_bytes((tmp_path / "run" / "step_00000001.pt").read_bytes())
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(copy)["step"] == 1
    assert "has no recorded checksum" in caplog.text
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
