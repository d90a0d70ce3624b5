"""engine.runtime: the device and autocast precision asked for (or refused, naming the key), seeds and RNG states."""

from __future__ import annotations

import io
import logging
import random

import numpy as np
import pytest
import torch

from pixelssl.engine import runtime
from pixelssl.errors import PixelSSLError


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_captured_rng_states_restore_every_generator_and_load_with_weights_only():
    runtime.seed_everything(11)
    state = runtime.capture_rng()
    first = _draws()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    runtime.restore_rng(torch.load(buffer, weights_only=True))  # a checkpoint's copy, loaded safely
    again = _draws()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_a_seed_fixes_python_numpy_and_torch_alike():
    runtime.seed_everything(5)
    a = _draws()
    runtime.seed_everything(5)
    b = _draws()
    runtime.seed_everything(6)
    c = _draws()
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    assert a[0] != c[0] and a[1] != c[1] and not torch.equal(a[2], c[2])


def test_prepare_sets_the_threads_then_seeds(one_thread):
    runtime.prepare(2, 3)
    assert torch.get_num_threads() == 2
    x = torch.rand(2)
    runtime.prepare(0, 3)  # 0 leaves torch's thread count alone
    assert torch.get_num_threads() == 2 and torch.equal(torch.rand(2), x)


def test_devices_auto_or_by_name_and_cuda_without_cuda_names_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(PixelSSLError, match=r"^finetune\.device=cuda:1 but CUDA is not available on this machine"):
        runtime.resolve_device("cuda:1", "finetune.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("cuda")


def test_precision_follows_train_amp_and_the_hardware(monkeypatch, caplog):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert runtime.resolve_precision("fp32", cuda) == runtime.Precision(False, torch.float32, False)
    assert runtime.resolve_precision("fp32", cpu).label == "fp32"
    fp16 = runtime.resolve_precision("fp16", cuda)
    assert fp16.label == "fp16" and fp16.use_grad_scaler  # fp16 needs loss scaling, bf16 does not
    with pytest.raises(PixelSSLError, match="train.amp=fp16 needs CUDA"):
        runtime.resolve_precision("fp16", cpu)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_precision("auto", cpu).label == "fp32"  # emulated bf16 would be slower
    with caplog.at_level(logging.WARNING):
        assert runtime.resolve_precision("bf16", cpu) == runtime.Precision(True, torch.bfloat16, False)
    assert "no native bf16" in caplog.text
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.resolve_precision("auto", cpu).label == "bf16"
