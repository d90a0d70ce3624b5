"""Shared pieces of the fuzz tests (``tests/fuzz``): case counts, the outcome check, a hang guard, file strategies.

Every fuzz test runs a public entry point on a generated input and passes when the call returns a result or raises
one of the documented one-line errors (a ``PixelSSLError`` subclass: ``ConfigError``, ``DataError``,
``WeightsFileError``, ...): one line, not empty, naming the file or key, never torch's ``weights_only`` advice.
Any other exception type fails the case, and so does a call that runs past ``HANG_SECONDS``.

``CASES`` holds the number of generated cases of each test in ``make test`` (hypothesis profile ``default``);
``make test-all`` sets ``HYPOTHESIS_PROFILE=thorough``, which runs ``THOROUGH`` times as many.
``docs/failure_behaviour.md`` ("Fuzzed boundaries") states the totals per boundary; a test checks they agree.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from PIL import Image

from pixelssl.errors import PixelSSLError

# ------------------------------------------------------------------------------------------------ case counts
THOROUGH = 5  # make test-all (HYPOTHESIS_PROFILE=thorough) runs this many times the cases of make test
PROFILES = {"default": 1, "thorough": THOROUGH}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")  # conftest.py confirms it at pytest_configure

# boundary -> {test: cases in make test}. docs/failure_behaviour.md states the per-boundary sums.
CASES: dict[str, dict[str, int]] = {
    "config": {"overrides": 150, "presets": 100, "cli": 50},
    "coco": {"structure": 200, "text": 100},
    "segmentation": {"folders": 200},
    "images": {"read": 200, "views": 100},
    "inpaint_fill": {"cli": 120, "folder": 80},
    "weights": {"bytes": 150, "objects": 100, "pickled_code": 50},
    "serve": {"multipart": 150, "raw": 100},
}
HANG_SECONDS = 60.0  # one case taking longer than this (on a loaded 2-core machine) counts as a hang


def boundary_totals(factor: int = 1) -> dict[str, int]:
    return {name: factor * sum(tests.values()) for name, tests in CASES.items()}


def use_profile(name: str) -> None:
    global PROFILE
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    PROFILE = name


def fuzz(boundary: str, test: str) -> settings:
    """Hypothesis settings for one fuzz test: its case count (scaled by the profile), no per-case deadline (the
    machine is shared; ``time_limit`` catches hangs instead) and no health checks that only flag slow inputs."""
    return settings(
        max_examples=CASES[boundary][test] * PROFILES[PROFILE],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                               HealthCheck.large_base_example],
    )


# ------------------------------------------------------------------------------------------------ outcomes
class Hang(BaseException):  # not an Exception: code under test that catches Exception must not swallow it
    """A call ran past ``HANG_SECONDS``."""


@contextlib.contextmanager
def time_limit(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise ``Hang`` in the main thread when the block runs longer than ``seconds`` (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


TORCH_ADVICE = ("weights_only=False", "weights_only` set to `False`", "weights_only` argument", "Weights only load")


def check_message(text: str, *names: object) -> None:
    """A documented error message: one non-empty line naming one of ``names`` (a file, folder or key)."""
    assert text.strip(), "empty error message"
    assert "\n" not in text.strip(), f"error is not one line: {text!r}"
    assert "Traceback" not in text, text
    assert not any(advice in text for advice in TORCH_ADVICE), f"torch's advice leaked into the message: {text!r}"
    if names:  # as given, or escaped as repr() shows it (names with line breaks or control characters)
        shown = [form for n in names for form in (str(n), repr(str(n))[1:-1])]
        assert any(form in text for form in shown), f"{text!r} names none of {[str(n) for n in names]}"


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def outcome(call: Callable[[], Any], *names: object, errors: tuple[type[BaseException], ...] = (PixelSSLError,),
            label: str = "") -> Outcome:
    """Run ``call``: its result, or the documented error it raised (checked by ``check_message``). Any other
    exception propagates and fails the case. ``label`` counts the outcomes (``--hypothesis-show-statistics``)."""
    try:
        with time_limit():
            result = Outcome(value=call())
    except errors as exc:
        check_message(str(exc), *names)
        result = Outcome(error=exc)
    if label:
        event(f"{label}: {'result' if result.ok else type(result.error).__name__}")
    return result


TEMP_MARKERS = (".tmp", ".part", ".partial", "~")


def temp_files(folder: str | os.PathLike) -> list[str]:
    """Files under ``folder`` that look like a writer's leftovers (``x.tmp``, ``.x.123.tmp``, ``x.part``, ``x~``)."""
    found = []
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            if any(marker in name for marker in TEMP_MARKERS[:3]) or name.endswith("~"):
                found.append(os.path.join(dirpath, name))
    return found


def assert_no_temp_files(folder: str | os.PathLike) -> None:
    left = temp_files(folder)
    assert not left, f"partial files left behind: {left}"


# ------------------------------------------------------------------------------------------------ images
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF")
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif", "GIF": ".gif"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".PNG", ".JPG")  # what the folder readers list
# The modes issue #20 names (each must decode when the file is intact), then rarer ones (decoded or refused).
COMMON_MODES = ("1", "L", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK")
RARE_MODES = ("LA", "PA", "YCbCr", "LAB", "HSV", "RGBX", "I;16B", "RGBa")
_BYTES_PER_PIXEL = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4, "I;16": 2, "I": 4, "F": 4, "CMYK": 4, "LA": 2, "PA": 2,
                    "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBX": 4, "I;16B": 2, "RGBa": 4}


def make_image(mode: str, width: int, height: int, seed: int, transparency: bool = False) -> Image.Image:
    """A PIL image of ``mode`` with random pixels (random bytes: F images get NaN / inf too)."""
    rng = np.random.default_rng(seed)
    if mode == "1":
        raw = rng.integers(0, 256, ((width + 7) // 8) * height, dtype=np.uint8).tobytes()
    else:
        raw = rng.integers(0, 256, width * height * _BYTES_PER_PIXEL[mode], dtype=np.uint8).tobytes()
    image = Image.frombytes(mode, (width, height), raw)
    if mode in ("P", "PA"):
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        if transparency and mode == "P":
            image.info["transparency"] = int(rng.integers(0, 256))
    return image


def _saves(mode: str, fmt: str) -> bool:
    try:
        make_image(mode, 3, 2, 0).save(io.BytesIO(), format=fmt)
    except Exception:
        return False
    return True


SAVABLE = {mode: tuple(f for f in FORMATS if _saves(mode, f)) for mode in COMMON_MODES + RARE_MODES}
SAVABLE = {mode: formats for mode, formats in SAVABLE.items() if formats}


def encode(image: Image.Image, fmt: str, exif_orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        options["exif"] = exif.tobytes()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


class ImageFile:
    """A generated image file: its bytes, a suffix, how it was made and damaged, and its size when intact.

    (Not a dataclass: hypothesis would print every byte of a failing case instead of ``__repr__``.)"""

    def __init__(self, data: bytes, suffix: str, mode: str, fmt: str, width: int, height: int, damage: str) -> None:
        self.data, self.suffix, self.mode, self.fmt = data, suffix, mode, fmt
        self.width, self.height = width, height
        self.damage = damage  # none | truncated | flipped | random | empty

    @property
    def intact(self) -> bool:
        return self.damage == "none"

    def __repr__(self) -> str:  # hypothesis prints the failing case: keep it short
        return (f"ImageFile({self.mode} {self.fmt} {self.width}x{self.height}{self.suffix}, {self.damage}, "
                f"{len(self.data)} bytes)")


def sizes(max_side: int = 40) -> st.SearchStrategy[tuple[int, int]]:
    """(width, height): mostly small, sometimes 1 px wide/high or of an extreme aspect ratio."""
    small = st.tuples(st.integers(1, max_side), st.integers(1, max_side))
    extreme = st.sampled_from([(1, 1), (1, 2), (2, 1), (1, 600), (600, 1), (2000, 2), (3, 1500), (700, 9)])
    return st.one_of(small, small, small, extreme)


def damage(data: bytes, draw: Callable[[st.SearchStrategy], Any]) -> tuple[bytes, str]:
    """Leave the bytes alone (most cases), truncate them, flip a few bytes, or replace them."""
    kind = draw(st.sampled_from(["none"] * 5 + ["truncated"] * 2 + ["flipped", "random", "empty"]))
    if kind == "truncated" and len(data) > 1:
        return data[: draw(st.integers(1, len(data) - 1))], kind
    if kind == "flipped" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out), kind if bytes(out) != data else "none"
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=300)), kind
    if kind == "empty":
        return b"", kind
    return data, "none"


@st.composite
def image_files(draw: Callable, max_side: int = 40, modes: tuple[str, ...] | None = None,
                formats: tuple[str, ...] = FORMATS, damaged: bool = True, size: tuple[int, int] | None = None,
                exif: bool = True) -> ImageFile:
    """An image file of any mode, size (or ``size``) and format, possibly truncated, with flipped bytes, random or
    empty."""
    modes = tuple(m for m in (modes or tuple(SAVABLE)) if m in SAVABLE and set(SAVABLE[m]) & set(formats))
    mode = draw(st.sampled_from(modes))
    fmt = draw(st.sampled_from([f for f in SAVABLE[mode] if f in formats]))
    width, height = size or draw(sizes(max_side))
    image = make_image(mode, width, height, draw(st.integers(0, 2**16)), transparency=draw(st.booleans()))
    orientation = draw(st.sampled_from([None, None, None, 1, 3, 6, 8])) if fmt == "JPEG" and exif else None
    data = encode(image, fmt, orientation)
    if orientation in (5, 6, 7, 8):
        width, height = height, width  # displayed size
    own = SUFFIX[fmt] if SUFFIX[fmt] in IMAGE_SUFFIXES else ".png"  # TIFF / GIF under a listed suffix
    suffix = own if draw(st.sampled_from([True, True, True, False])) else draw(st.sampled_from(IMAGE_SUFFIXES))
    kind = "none"
    if damaged:
        data, kind = damage(data, draw)
    return ImageFile(data, suffix, mode, fmt, width, height, kind)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ JSON values
def json_scalars() -> st.SearchStrategy:
    """Scalars a JSON file (or a YAML one) can hold, with the awkward ones: NaN, inf, huge ints, empty strings."""
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(-(2**40), 2**40), st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30, 10**400]),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1e-300, 1e308, -0.0]),
        st.text(max_size=12), st.sampled_from(["", " ", "0", "1.5", "true", "null", "../x", "a\nb", "é\u2028"]),
    )


def json_values(max_leaves: int = 8) -> st.SearchStrategy:
    return st.recursive(json_scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=max_leaves)


# ------------------------------------------------------------------------------------------------ masks
MASK_MODES = ("L", "L", "1", "RGB", "RGBA", "LA", "P", "I;16", "F")
MASK_FORMATS = ("PNG", "PNG", "PNG", "BMP", "JPEG", "WEBP", "TIFF")


@st.composite
def mask_files(draw: Callable, width: int, height: int, damaged: bool = True) -> ImageFile:
    """A hole mask for a ``width`` x ``height`` image (white = hole, or opaque strokes on a transparent layer): one
    or a few boxes, noise, nothing or everything, of any mode and format, sometimes of another size or damaged."""
    if draw(st.sampled_from([False] * 7 + [True])):
        width, height = draw(st.sampled_from([(width + 1, height), (width, max(1, height - 1)), (height, width), (1, 1)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pattern = draw(st.sampled_from(["boxes"] * 6 + ["noise", "none", "all", "pixel"]))
    hole = np.zeros((height, width), bool)
    if pattern == "boxes":
        for _ in range(draw(st.integers(1, 3))):
            top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
            hole[top: top + int(rng.integers(1, height // 2 + 2)), left: left + int(rng.integers(1, width // 2 + 2))] = True
    elif pattern == "noise":
        hole = rng.random((height, width)) < 0.3
    elif pattern == "all":
        hole[:] = True
    elif pattern == "pixel":
        hole[int(rng.integers(0, height)), int(rng.integers(0, width))] = True
    mode = draw(st.sampled_from(MASK_MODES))
    grey = np.where(hole, 255, 0).astype(np.uint8)
    if mode in ("RGBA", "LA"):  # strokes of some colour on a transparent layer
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        rgba = np.concatenate([np.broadcast_to(colour, (height, width, 3)), grey[..., None]], axis=-1)
        image = Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").convert(mode)
    elif mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(grey.astype(np.float32))
    else:
        image = Image.fromarray(grey, mode="L").convert(mode)
    formats = [f for f in MASK_FORMATS if f in SAVABLE.get(mode, FORMATS)] or ["TIFF"]
    fmt = draw(st.sampled_from(formats))
    data, kind = encode(image, fmt), "none"
    if damaged:
        data, kind = damage(data, draw)
    own = SUFFIX[fmt] if SUFFIX[fmt] in IMAGE_SUFFIXES else ".png"
    return ImageFile(data, own, mode, fmt, width, height, kind)


# ------------------------------------------------------------------------------------------------ pickled code
CANARY_CALLS: list[tuple] = []


def canary(*args: Any) -> dict:
    """What the pickled code in the weights cases calls: if a loader ever ran it, ``CANARY_CALLS`` says so."""
    CANARY_CALLS.append(args)
    return {}


class PickledCode:
    """An object whose pickle calls ``target`` (a callable and its arguments) when it is loaded."""

    def __init__(self, target: tuple) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return self.target

    def __repr__(self) -> str:
        return f"PickledCode({getattr(self.target[0], '__qualname__', self.target[0])})"
