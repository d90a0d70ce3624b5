"""Where and how a run executes: device, autocast precision, threads, seeds and RNG state capture."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch

from pixelssl.errors import PixelSSLError

log = logging.getLogger(__name__)


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA on a machine without it is an error naming ``key``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PixelSSLError(f"{key}={name} but CUDA is not available on this machine (use cpu or auto)")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 / AMX); without it bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    enabled: bool
    dtype: torch.dtype
    use_grad_scaler: bool

    @property
    def label(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype] if self.enabled else "fp32"


def resolve_precision(mode: str, device: torch.device) -> Precision:
    """Autocast settings for ``train.amp``: auto = bf16 where the hardware has it, else fp32."""
    if mode == "fp32":
        return Precision(False, torch.float32, False)
    if mode == "fp16":
        if device.type != "cuda":
            raise PixelSSLError("train.amp=fp16 needs CUDA; use bf16 or fp32 on CPU")
        return Precision(True, torch.float16, True)
    if mode == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("this CPU has no native bf16: autocast will be emulated and much slower than fp32")
        return Precision(True, torch.bfloat16, False)
    # auto
    if device.type == "cuda":
        return Precision(True, torch.bfloat16, False) if torch.cuda.is_bf16_supported() else \
            Precision(True, torch.float16, True)
    return Precision(True, torch.bfloat16, False) if cpu_has_native_bf16() else Precision(False, torch.float32, False)


def prepare(threads: int, seed: int) -> None:
    """The start of every run: torch's CPU threads (``threads`` > 0; 0 leaves torch's default), then every RNG
    seeded (the same on every process: identical initial weights)."""
    if threads > 0:
        torch.set_num_threads(threads)
    seed_everything(seed)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict:
    """All RNG states of this process, as tensors/plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
