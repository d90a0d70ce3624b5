"""Fuzzed weights and checkpoint files: random bytes, damaged files of each format, wrong types and wrong shapes,
and pickles holding code, through every loader a user's file reaches.

Loaders: ``models.safe_load.load_weights_file`` (what every weights read goes through), ``resolve_backbone`` (the
``--backbone`` of probe / finetune-seg / finetune-det), ``import_checkpoint`` and ``pixelssl import`` (each
``--from``), ``pixelssl export``, ``engine.checkpoint.load_checkpoint`` (``--resume``) and the inpainting
``load_generator`` (``fill`` / ``eval`` / ``serve --weights``). A case passes when the loader returns or raises a
one-line ``PixelSSLError`` naming the file (the CLI: exit 1 with one ``error:`` line, nothing written); a file
holding pickled code must be refused with a message that says so and why, and its code must never run.
"""

from __future__ import annotations

import argparse
import builtins
import collections
import contextlib
import fractions
import functools
import io
import os
import pickle
import tempfile
from pathlib import Path

import fuzz_support
import numpy as np
import pytest
import torch
from fuzz_support import (
    CANARY_CALLS,
    PickledCode,
    assert_no_temp_files,
    check_message,
    damage,
    fuzz,
    json_scalars,
    json_values,
    outcome,
    time_limit,
)
from hypothesis import event, given
from hypothesis import strategies as st

from pixelssl.cli import main
from pixelssl.engine.checkpoint import load_checkpoint
from pixelssl.errors import PixelSSLError
from pixelssl.evaluate.source import resolve_backbone
from pixelssl.export.importers import IMPORT_FORMATS, import_checkpoint
from pixelssl.inpaint.fill import load_generator
from pixelssl.models.backbones import build_backbone
from pixelssl.models.safe_load import load_weights_file

with torch.device("meta"):
    R18 = {k: tuple(v.shape) for k, v in build_backbone("resnet18").state_dict().items()}
PREFIXES = ("", "", "module.", "encoder.", "module.encoder.", "encoder_q.0.", "module.encoder_q.", "backbone.",
            "state.", "model.")
DTYPES = (torch.float32, torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8,
          torch.uint8, torch.bool, torch.complex64)


# ------------------------------------------------------------------------------------------------ contents
@st.composite
def small_tensors(draw) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, 4), max_size=4))
    dtype = draw(st.sampled_from(DTYPES))
    values = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if draw(st.sampled_from([False] * 9 + [True])):
        values = values.fill_(float(draw(st.sampled_from(["nan", "inf", "-inf"]))))
    return values.to(dtype) if not dtype.is_complex else values.to(dtype)


def _keys() -> st.SearchStrategy[str]:
    return st.one_of(st.tuples(st.sampled_from(PREFIXES), st.sampled_from(sorted(R18))).map("".join),
                     st.text(max_size=12), st.sampled_from(["", ".", "fc.weight", "conv1.weight", "queue", "opt"]))


@st.composite
def state_dicts(draw, tensors_only: bool = False) -> dict:
    """A small state dict: release-like or random names, tiny tensors of any dtype, sometimes non-tensor values;
    or every resnet18 name at the wrong (tiny) shape; or resnet18 names missing a few."""
    kind = draw(st.sampled_from(["random"] * 4 + ["wrong_shapes", "some_keys"]))
    if kind == "wrong_shapes":
        prefix = draw(st.sampled_from(PREFIXES))
        return {prefix + k: torch.zeros([min(d, 2) for d in shape][: draw(st.integers(0, 4))]) for k, shape in R18.items()}
    if kind == "some_keys":
        keys = draw(st.lists(st.sampled_from(sorted(R18)), min_size=1, max_size=6, unique=True))
        return {k: torch.zeros(R18[k]) if R18[k] and np.prod(R18[k]) < 10_000 else torch.zeros(1) for k in keys}
    values = small_tensors() if tensors_only else st.one_of(small_tensors(), small_tensors(), json_scalars())
    return draw(st.dictionaries(_keys(), values, max_size=5))


@st.composite
def saved_objects(draw) -> object:
    """What a torch / pickle file may hold: state dicts in each release's wrapper, other containers, scalars."""
    sd = draw(state_dicts())
    kind = draw(st.sampled_from(["plain", "state_dict", "model", "generator", "pixpro", "mmcv", "checkpoint",
                                 "list", "scalar", "ordered", "int_keys", "nested"]))
    if kind == "plain":
        return sd
    if kind in ("state_dict", "model"):
        return {kind: sd, "epoch": draw(json_scalars())}
    if kind == "generator":
        return {"generator": sd, "config": draw(st.sampled_from([{"model": {"cnum": 8}}, {}, None, {"model": 5}]))}
    if kind == "pixpro":
        return {"opt": argparse.Namespace(arch="resnet18", lr=draw(json_scalars())), "model": sd}
    if kind == "mmcv":
        return {"meta": {"seed": np.int64(draw(st.integers(0, 9)))}, "state_dict": sd}
    if kind == "checkpoint":
        return {"step": draw(json_scalars()), "model": sd, "config": draw(json_values(4))}
    if kind == "list":
        return list(sd.values())
    if kind == "scalar":
        return draw(json_values(4))
    if kind == "ordered":
        return collections.OrderedDict(sd)
    if kind == "int_keys":
        return {k: v for k, v in enumerate(sd.values())}
    return {"a": {"b": {"state_dict": sd}}}


def _encode(obj: object, container: str) -> bytes | None:
    """``obj`` in a file format: torch zip, legacy torch, safetensors, a plain pickle. None when it cannot be."""
    buffer = io.BytesIO()
    try:
        if container == "zip":
            torch.save(obj, buffer)
        elif container == "legacy":
            torch.save(obj, buffer, _use_new_zipfile_serialization=False)
        elif container == "safetensors":
            from safetensors.torch import save

            if not (isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in obj.items())):
                return None
            return save({k: v.contiguous() for k, v in obj.items()},
                        metadata={"pixelssl_inpaint": '{"cnum": 8}', "format": "pt"})
        else:
            numpy = obj
            if isinstance(obj, dict):
                numpy = {k: v.numpy() if isinstance(v, torch.Tensor) and v.dtype != torch.bfloat16 else v
                         for k, v in obj.items()}
            pickle.dump({"model": numpy, "__author__": "fuzz"}, buffer, protocol=2)
    except Exception:  # e.g. complex tensors in safetensors
        return None
    return buffer.getvalue()


SUFFIXES = {"zip": ".pth", "legacy": ".pt", "safetensors": ".safetensors", "pickle": ".pkl"}
LOADERS = ("safe_load", "safe_load", "import", "import", "cli_import", "checkpoint", "generator", "backbone",
           "cli_export")


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), time_limit():
        rc = main(argv)
    return rc, err.getvalue()


def _load(loader: str, path: Path, fmt: str, out: Path) -> object:
    """One loader on ``path``: its result, or the checked documented error (``outcome``)."""
    if loader == "safe_load":
        return outcome(lambda: load_weights_file(path, pickles=True), path, label=loader)
    if loader == "import":
        return outcome(lambda: import_checkpoint(path, fmt), path, label=loader)
    if loader == "checkpoint":
        return outcome(lambda: load_checkpoint(path), path, label=loader)
    if loader == "generator":
        return outcome(lambda: load_generator(path), path, label=loader)
    if loader == "backbone":
        return outcome(lambda: resolve_backbone(str(path), arch=None), path, label=loader)
    argv = (["import", str(path), "--from", fmt, "--out", str(out)] if loader == "cli_import"
            else ["export", str(path), "--to", "safetensors", "--out", str(out / "export.safetensors")])
    rc, err = _cli(argv)
    event(f"{loader}: exit {rc}")
    if rc != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
        check_message(lines[0], path)
        assert not any(out.iterdir()), f"a failed {loader} wrote {list(out.iterdir())}"
    return rc


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A real torchvision-layout resnet18 state dict (half precision: half the bytes to copy per case)."""
    path = tmp_path_factory.mktemp("r18") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in build_backbone("resnet18").state_dict().items()},
               path)
    return path


# ------------------------------------------------------------------------------------------------ tests
@fuzz("weights", "bytes")
@given(data=st.data(), container=st.sampled_from(sorted(SUFFIXES)), loader=st.sampled_from(LOADERS),
       fmt=st.sampled_from(IMPORT_FORMATS), source=st.sampled_from(["small"] * 6 + ["resnet18", "random"]))
def test_damaged_and_random_files_are_one_line_errors(resnet18_file, data, container, loader, fmt, source):
    """Intact, truncated, byte-flipped and random files of each format."""
    if source == "resnet18":
        raw = resnet18_file.read_bytes()
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))] if data.draw(st.booleans()) else raw
        container = "zip"
    elif source == "random":
        magic = data.draw(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x05", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]))
        raw = magic + data.draw(st.binary(max_size=300))
    else:
        raw = _encode(data.draw(state_dicts(tensors_only=container == "safetensors")), container)
        if raw is None:
            raw = _encode({"w": torch.zeros(2)}, container)
        raw, kind = damage(raw, data.draw)
        event(f"{container} {kind}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weights{SUFFIXES[container]}"
        path.write_bytes(raw)
        out = Path(tmp) / "out"
        out.mkdir()
        _load(loader, path, fmt, out)
        assert_no_temp_files(tmp)


@fuzz("weights", "objects")
@given(obj=saved_objects(), container=st.sampled_from(["zip", "zip", "legacy", "safetensors", "pickle"]),
       loader=st.sampled_from(LOADERS), fmt=st.sampled_from(IMPORT_FORMATS))
def test_wrong_types_and_shapes_are_one_line_errors(obj, container, loader, fmt):
    raw = _encode(obj, container)
    if raw is None:
        container, raw = "zip", _encode(obj, "zip")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weights{SUFFIXES[container]}"
        path.write_bytes(raw)
        out = Path(tmp) / "out"
        out.mkdir()
        _load(loader, path, fmt, out)
        assert_no_temp_files(tmp)


MARKER = Path(tempfile.gettempdir()) / f"pixelssl-fuzz-pickled-code-ran-{os.getpid()}"
CODE = (
    (fuzz_support.canary, ("called",)),
    (builtins.eval, ("__import__('fuzz_support').canary('eval')",)),
    (builtins.exec, ("__import__('fuzz_support').canary('exec')",)),
    (os.system, (f"touch '{MARKER}'",)),
    (fractions.Fraction, ("1/3",)),  # a harmless class, but not one of the allowed types
    (functools.partial, (fuzz_support.canary, "partial")),
)


@st.composite
def code_objects(draw) -> object:
    """Pickled code at the top, inside a state dict, inside a release's wrapper, or in an allowed type's state."""
    code = PickledCode(draw(st.sampled_from(CODE)))
    sd = draw(state_dicts(tensors_only=True))
    where = draw(st.sampled_from(["top", "value", "wrapper", "namespace", "list", "key_of_meta"]))
    if where == "top":
        return code
    if where == "value":
        return {**sd, "conv1.weight": code}
    if where == "wrapper":
        return {"state_dict": sd, "model": sd, "generator": sd, "meta": code}
    if where == "namespace":
        return {"opt": argparse.Namespace(hook=code), "model": sd}
    if where == "list":
        return [sd, [code]]
    return {"meta": {"seed": code}, "state_dict": sd}


@fuzz("weights", "pickled_code")
@given(obj=code_objects(), container=st.sampled_from(["zip", "legacy", "pickle"]), loader=st.sampled_from(LOADERS),
       fmt=st.sampled_from(IMPORT_FORMATS))
def test_pickled_code_is_refused_and_never_runs(obj, container, loader, fmt):
    raw = _encode(obj, container)
    assert raw is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"weights{SUFFIXES[container]}"
        path.write_bytes(raw)
        out = Path(tmp) / "out"
        out.mkdir()
        result = _load(loader, path, fmt, out)
    assert not CANARY_CALLS and not MARKER.exists(), "pickled code ran"
    if isinstance(result, int):
        assert result == 1, "a file holding pickled code was accepted"
    else:
        assert not result.ok, "a file holding pickled code was accepted"
        if container == "pickle" and "is a plain pickle, not a torch checkpoint" in str(result.error):
            check_message(str(result.error), path)  # not read at all: only --from detectron2 reads plain pickles
        else:
            _assert_refusal(str(result.error), path)


def _assert_refusal(message: str, path: Path) -> None:
    """The refusal says that the file was refused and why, and names it."""
    check_message(message, path)
    assert "refused" in message, message
    assert any(why in message for why in ("pickled code", "does not run", "not plain", "pickled objects")), message


def _loaders(path: Path) -> dict:
    return {"load_weights_file": lambda: load_weights_file(path), "resolve_backbone": lambda: resolve_backbone(str(path)),
            "load_checkpoint": lambda: load_checkpoint(path), "load_generator": lambda: load_generator(path),
            **{f"import --from {fmt}": lambda fmt=fmt: import_checkpoint(path, fmt) for fmt in IMPORT_FORMATS}}


def test_each_loader_refuses_pickled_code_saying_why(tmp_path, capsys):
    """Explicitly, for every loader a user's file reaches: refused, why, the file named, no weights_only advice."""
    obj = {"model": {"conv1.weight": PickledCode((os.system, (f"touch '{MARKER}'",)))}}
    for container in ("zip", "legacy"):
        path = tmp_path / f"evil{SUFFIXES[container]}"
        path.write_bytes(_encode(obj, container))
        for name, call in _loaders(path).items():
            with pytest.raises(PixelSSLError) as error:
                call()
            _assert_refusal(str(error.value), path)
            assert "posix.system" in str(error.value) or "pickled code" in str(error.value), (name, error.value)
        for argv in (["import", str(path), "--from", "pixpro", "--out", str(tmp_path / "out")],
                     ["export", str(path), "--to", "safetensors", "--out", str(tmp_path / "x.safetensors")],
                     ["probe", "--backbone", str(path), "--data", "synthetic"],
                     ["inpaint", "fill", "--weights", str(path), "--image", str(path), "--mask", str(path),
                      "--out", str(tmp_path / "f.png")]):
            assert main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and err.startswith("error: "), err
            if argv[0] != "inpaint":  # fill reads the image first: the 'image' is not one
                _assert_refusal(err, path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(_encode(obj, "pickle"))
    with pytest.raises(PixelSSLError) as error:
        import_checkpoint(path, "detectron2")
    _assert_refusal(str(error.value), path)
    assert not MARKER.exists() and not CANARY_CALLS


def test_cases_the_fuzzer_found_are_one_line_errors(tmp_path):
    """Found by the tests above: a state dict with a non-tensor entry or a non-text key crashed --backbone and
    export (AttributeError: .shape / .startswith); an inpainting file's stored config that is not a mapping, lacks
    keys or names a huge generator crashed (or tried to allocate it) before the weights were compared with it."""
    from safetensors.torch import save_file

    for name, obj in (("none_value.pt", {"conv1.weight": None}), ("int_key.pt", {1: torch.zeros(1)})):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(PixelSSLError, match="does not hold a state dict") as error:
            resolve_backbone(str(path))
        check_message(str(error.value), path)
        assert _cli(["export", str(path), "--to", "safetensors", "--out", str(tmp_path / "x.safetensors")])[0] == 1
    path = tmp_path / "newline_key.pt"  # found by the thorough profile: a key with a line break split the error
    torch.save({"model": {"a\nb": torch.zeros(1)}, "x\ny": 1}, path)
    for fmt in IMPORT_FORMATS:
        with pytest.raises(PixelSSLError) as error:
            import_checkpoint(path, fmt)
        check_message(str(error.value), path)
    good = {"w": torch.zeros(2)}
    for meta, words in (('"a string"', "not a mapping"), ('{"cnum": 8}', "cannot build"),
                        ('{"cnum": 1000000, "contextual_attention": true, "ca_ksize": 3, "ca_rate": 2, "ca_fuse_k": 3, '
                         '"ca_softmax_scale": 10, "ca_memory_budget": 4, "downsample": "release", "padding": "same"}',
                         "do not match"),
                        ('{"cnum": -4}', "cannot build"), ("[1, 2]", "not a mapping")):
        path = tmp_path / "generator.safetensors"
        save_file(good, str(path), metadata={"pixelssl_inpaint": meta})
        with time_limit(20), pytest.raises(PixelSSLError, match=words) as error:
            load_generator(path)
        check_message(str(error.value), path)
