"""inpaint.release_weights: ``pixelssl inpaint import DIR`` maps the release's TensorFlow checkpoint exactly."""

import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from tf_bundle_writer import RELEASE_GENERATOR, release_extras, write_bundle

from pixelssl.cli import main
from pixelssl.errors import WeightsFileError
from pixelssl.inpaint.fill import fill_image, load_generator
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.inpaint.release_weights import import_release, release_variables, to_torch, write_release_generator
from pixelssl.inpaint.tf_checkpoint import TensorBundle

GENERATOR_VARIABLES = 2 * len(RELEASE_GENERATOR)  # 42 convs, kernel + bias each


def _copy_bundle(tmp_path, tensors, **options):
    folder = tmp_path / "ckpt"
    write_bundle(folder / "snap-0", tensors, **options)
    return folder


def _run(capsys, *argv):
    code = main(["inpaint", *argv])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _hand_loaded_generator(tensors, rgb=True):
    """Our generator filled from the release tensors by hand: convs in definition order = release build order;
    kernels (kh, kw, in, out) -> (out, in, kh, kw); with ``rgb`` the BGR image channels reversed."""
    generator = InpaintGenerator(cnum=32).eval()
    convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(RELEASE_GENERATOR)
    with torch.no_grad():
        for conv, (layer, *_) in zip(convs, RELEASE_GENERATOR):
            kernel = torch.from_numpy(tensors[f"inpaint_net/{layer}/kernel"]).permute(3, 2, 0, 1)
            bias = torch.from_numpy(tensors[f"inpaint_net/{layer}/bias"])
            if rgb and layer in ("conv1", "xconv1", "pmconv1"):
                kernel = kernel[:, [2, 1, 0, 3, 4]]
            if rgb and layer in ("conv17", "allconv17"):
                kernel, bias = kernel.flip(0), bias.flip(0)
            conv.weight.copy_(kernel)
            conv.bias.copy_(bias)
    return generator


def test_import_maps_every_generator_variable_and_ignores_the_rest(release_dir, release_tensors):
    imported = import_release(release_dir)
    assert len(imported.state) == GENERATOR_VARIABLES == 84 and imported.cnum == 32
    assert set(imported.state) == set(InpaintGenerator(cnum=32).state_dict())
    assert sorted(imported.ignored) == sorted(set(release_extras()))
    report = imported.report()
    assert "used 84 tensors (42 convs)" in report and f"ignored {len(release_extras())} tensors" in report
    assert "discriminator/* (3)" in report and "optimizer slots (.../Adam, .../Adam_1) (3)" in report


def test_kernels_go_from_hwio_to_oihw(release_dir, release_tensors):
    kernel = release_tensors["inpaint_net/conv2_downsample/kernel"]  # (3, 3, 32, 64)
    ours = import_release(release_dir).state["coarse.encoder.1.0.weight"]  # (64, 32, 3, 3)
    assert ours.shape == (64, 32, 3, 3)
    for o, i, y, x in [(0, 0, 0, 0), (63, 31, 2, 0), (5, 17, 0, 2), (40, 3, 1, 2)]:
        assert ours[o, i, y, x].item() == kernel[y, x, i, o]


def test_imported_generator_on_rgb_is_the_release_network_on_bgr(release_dir, release_tensors):
    imported = load_generator(write_release_generator(import_release(release_dir), release_dir.parent / "w"))
    release = _hand_loaded_generator(release_tensors, rgb=False)  # the TF network as is: BGR in, BGR out
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:20] = 1
    with torch.no_grad():
        ours, theirs = imported(image, mask), release(image.flip(1), mask)
    assert ours.refined.std() > 0.05  # not saturated or constant: the comparison means something
    torch.testing.assert_close(ours.coarse, theirs.coarse.flip(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.refined, theirs.refined.flip(1), rtol=1e-4, atol=1e-5)


def test_cli_import_writes_a_generator_that_fill_eval_and_serve_load(release_dir, release_tensors, tmp_path, capsys):
    out = tmp_path / "imported"
    code, printed, err = _run(capsys, "import", str(release_dir), "--out", str(out))
    assert code == 0, err
    weights = out / "generator.safetensors"
    assert f"wrote {weights}" in printed and "used 84 tensors" in printed
    with safe_open(str(weights), framework="pt") as handle:
        meta = json.loads(handle.metadata()["pixelssl_inpaint"])
    assert meta["cnum"] == 32 and meta["contextual_attention"] is True

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 30, 36), dtype=np.uint8)
    hole = np.zeros((30, 36), bool)
    hole[6:20, 10:26] = True
    image_t, hole_t = torch.from_numpy(image), torch.from_numpy(hole)
    filled, flow = fill_image(load_generator(weights), image_t, hole_t, return_flow=True)
    by_hand, hand_flow = fill_image(_hand_loaded_generator(release_tensors), image_t, hole_t, return_flow=True)
    assert torch.equal(filled, by_hand) and torch.equal(flow, hand_flow)
    assert not torch.equal(filled[:, hole_t], image_t[:, hole_t])

    Image.fromarray(image.transpose(1, 2, 0)).save(tmp_path / "in.png")
    Image.fromarray(hole.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    code, _, err = _run(capsys, "fill", "--weights", str(weights), "--image", str(tmp_path / "in.png"),
                        "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), filled.permute(1, 2, 0).numpy())

    data = tmp_path / "images"
    data.mkdir()
    for n in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / f"{n}.png")
    code, printed, err = _run(capsys, "eval", "--weights", str(weights), "--data", str(data), "--num-images", "2",
                              "--size", "32")
    assert code == 0, err
    assert "deepfill" in printed

    serve = pytest.importorskip("pixelssl.inpaint.serve", reason="web extras not installed")
    assert serve.Inpainter(load_generator(weights)).generator.cnum == 32  # what `serve` builds from --weights


def test_default_output_sits_beside_the_checkpoint_folder(tmp_path, release_tensors):
    folder = _copy_bundle(tmp_path, release_tensors)
    written = write_release_generator(import_release(folder))
    assert written == tmp_path / "ckpt_pixelssl" / "generator.safetensors" and written.is_file()


def _one_line_error(capsys, path):
    code, _, err = _run(capsys, "import", str(path), "--out", str(path.parent / "out"))
    assert code == 1 and len(err) == 1, err
    return err[0]


def test_a_missing_generator_variable_is_one_line(tmp_path, capsys, release_tensors):
    tensors = dict(release_tensors)
    del tensors["inpaint_net/xconv5/bias"]
    message = _one_line_error(capsys, _copy_bundle(tmp_path, tensors))
    assert "lacks 1 generator variable" in message and "inpaint_net/xconv5/bias" in message


def test_an_extra_generator_variable_is_one_line(tmp_path, capsys, release_tensors):
    tensors = {**release_tensors, "inpaint_net/conv18/kernel": np.zeros((3, 3, 3, 3), np.float32)}
    message = _one_line_error(capsys, _copy_bundle(tmp_path, tensors))
    assert "has 1 generator variable(s) the DeepFill v1 release does not" in message
    assert "inpaint_net/conv18/kernel" in message


def test_a_wrong_shape_is_one_line(tmp_path, capsys, release_tensors):
    tensors = {**release_tensors, "inpaint_net/conv3/kernel": np.zeros((3, 3, 64, 32), np.float32)}
    message = _one_line_error(capsys, _copy_bundle(tmp_path, tensors))
    assert "'inpaint_net/conv3/kernel' is float32 [3, 3, 64, 32]" in message and "[3, 3, 64, 64]" in message


def test_a_truncated_data_file_is_one_line(tmp_path, capsys, release_tensors):
    folder = _copy_bundle(tmp_path, release_tensors)
    data = folder / "snap-0.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-1000])
    message = _one_line_error(capsys, folder)
    assert "is truncated" in message and "snap-0.data-00000-of-00001" in message


def test_a_corrupt_tensor_fails_its_checksum_in_one_line(tmp_path, capsys, release_tensors):
    folder = _copy_bundle(tmp_path, release_tensors)
    bundle = TensorBundle.open(folder)
    entry = bundle.entries["inpaint_net/conv9_atrous/kernel"]
    data = folder / "snap-0.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 17] ^= 0x01
    data.write_bytes(bytes(raw))
    message = _one_line_error(capsys, folder)
    assert "checksum of tensor 'inpaint_net/conv9_atrous/kernel' does not match" in message


def test_a_bad_magic_number_is_one_line(tmp_path, capsys):
    folder = _copy_bundle(tmp_path, {"a": np.ones(2, np.float32)})
    index = folder / "snap-0.index"
    index.write_bytes(index.read_bytes()[:-8] + struct.pack("<Q", 0x1234))
    message = _one_line_error(capsys, folder)
    assert "bad magic number 0x0000000000001234" in message and "snap-0.index" in message


def test_a_corrupt_index_block_and_snappy_blocks_are_one_line(tmp_path, capsys):
    folder = _copy_bundle(tmp_path, {"a": np.ones(2, np.float32)})
    index = folder / "snap-0.index"
    raw = bytearray(index.read_bytes())
    raw[3] ^= 0xFF
    index.write_bytes(bytes(raw))
    assert "checksum of its data block at byte 0 does not match" in _one_line_error(capsys, folder)
    folder = _copy_bundle(tmp_path / "snappy", {"a": np.ones(2, np.float32)}, compression=1)
    assert "Snappy-compressed" in _one_line_error(capsys, folder)


def test_a_folder_without_a_checkpoint_or_its_data_file_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "holds no TensorFlow checkpoint" in _one_line_error(capsys, tmp_path / "empty")
    folder = _copy_bundle(tmp_path, {"a": np.ones(2, np.float32)})
    (folder / "snap-0.data-00000-of-00001").unlink()
    with pytest.raises(WeightsFileError, match="data file .*snap-0.data-00000-of-00001' does not exist"):
        TensorBundle.open(folder)


def _tensorflow_python() -> str | None:
    """A Python that can import TensorFlow: this one, or the one named by PIXELSSL_TF_PYTHON (a separate venv, so
    that TensorFlow's own numpy and protobuf pins never meet the test environment)."""
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable
    return os.environ.get("PIXELSSL_TF_PYTHON") or None


@pytest.mark.slow
def test_imports_the_release_generator_from_a_checkpoint_tensorflow_wrote(tmp_path, capsys):
    import subprocess
    from pathlib import Path

    python = _tensorflow_python()
    if python is None:
        pytest.skip("TensorFlow is not installed here and PIXELSSL_TF_PYTHON names no Python that has it")
    folder = tmp_path / "release_places2_256"
    folder.mkdir()
    writer = Path(__file__).resolve().parent / "tf_release_writer.py"
    proc = subprocess.run([python, str(writer), str(folder)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    values = {name.replace("|", "/"): value for name, value in np.load(folder / "values.npz").items()}
    imported = import_release(folder)  # through the `checkpoint` file TensorFlow wrote
    assert len(imported.state) == GENERATOR_VARIABLES and sorted(imported.ignored) == sorted(release_extras())
    for name, key in release_variables().items():  # every value as TensorFlow stored it, mapped as documented
        layer, kind = name.split("/", 1)[1].rsplit("/", 1)
        assert torch.equal(imported.state[key], to_torch(layer, kind, values[name])), name
    assert torch.equal(imported.state["coarse.encoder.1.0.weight"],  # and one by hand: HWIO -> OIHW
                       torch.from_numpy(values["inpaint_net/conv2_downsample/kernel"]).permute(3, 2, 0, 1))
    code, out, _ = _run(capsys, "import", str(folder), "--out", str(tmp_path / "generator.safetensors"))
    assert code == 0 and "used 84 tensors (42 convs)" in out
    loaded = load_generator(tmp_path / "generator.safetensors")
    state = loaded.state_dict()
    assert all(torch.equal(state[key], value) for key, value in imported.state.items())
