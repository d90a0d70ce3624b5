"""``pixelssl inpaint import DIR``: the release's TensorFlow checkpoint read without TensorFlow, mapped exactly.

The bundles are written by ``tf_bundle_writer`` (from the format's specification, independent of the reader) with
the release generator's variable names and shapes and random values; one slow test writes one with TensorFlow.
"""

import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from tf_bundle_writer import RELEASE_GENERATOR, release_extras, release_generator_tensors, write_bundle
from tf_bundle_writer import crc32c as writer_crc32c

from pixelssl.cli import main
from pixelssl.errors import WeightsFileError
from pixelssl.inpaint.fill import fill_image, load_generator
from pixelssl.inpaint.networks import InpaintGenerator
from pixelssl.inpaint.release_weights import import_release, write_release_generator
from pixelssl.inpaint.tf_checkpoint import TensorBundle, crc32c, mask_crc, unmask_crc

GENERATOR_VARIABLES = 2 * len(RELEASE_GENERATOR)  # 42 convs, kernel + bias each


@pytest.fixture(scope="module")
def release_tensors():
    return {**release_generator_tensors(), **release_extras()}


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory, release_tensors):
    """A release-like model folder: `checkpoint` naming snap-0, plus snap-0.index / .data-00000-of-00001."""
    folder = tmp_path_factory.mktemp("model_logs") / "release_places2_256"
    write_bundle(folder / "snap-0", release_tensors)
    (folder / "checkpoint").write_text('model_checkpoint_path: "snap-0"\nall_model_checkpoint_paths: "snap-0"\n')
    return folder


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


def test_crc32c_is_castagnoli_and_masked_like_tensorflow():
    assert crc32c(b"123456789") == writer_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 200_003, dtype=np.uint8).tobytes()  # vectorised lanes + tail
    assert crc32c(data) == writer_crc32c(data)
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c(data)
    assert all(unmask_crc(mask_crc(c)) == c for c in (0, 1, 0xE3069283, 0xFFFFFFFF))


def test_reader_reads_back_every_tensor_exactly(release_dir, release_tensors):
    bundle = TensorBundle.open(release_dir)
    assert bundle.prefix == release_dir / "snap-0" and bundle.header.num_shards == 1
    assert set(bundle.entries) == set(release_tensors)
    for name, expected in release_tensors.items():
        value = bundle.read(name)
        assert value.dtype == expected.dtype and value.shape == expected.shape, name
        assert np.array_equal(value, expected), name


@pytest.mark.parametrize("block_size,restart_interval", [(256, 16), (64, 3), (1 << 20, 1)])
def test_reader_follows_several_data_blocks_and_prefix_compressed_keys(tmp_path, block_size, restart_interval):
    rng = np.random.default_rng(1)
    tensors = {f"scope/layer_{i:03d}/{kind}": rng.standard_normal((i % 4 + 1, 3)).astype(np.float32)
               for i in range(60) for kind in ("kernel", "bias", "kernel/Adam")}
    folder = _copy_bundle(tmp_path, tensors, block_size=block_size, restart_interval=restart_interval)
    bundle = TensorBundle.open(folder / "snap-0.index")
    assert set(bundle.entries) == set(tensors)
    assert all(np.array_equal(bundle.read(n), v) for n, v in tensors.items())


def test_checkpoint_folder_prefix_and_google_drive_names_resolve(tmp_path):
    folder = _copy_bundle(tmp_path, {"a": np.ones(2, np.float32)})
    assert TensorBundle.open(folder).prefix == folder / "snap-0"  # only one .index: no checkpoint file needed
    (folder / "checkpoint.txt").write_text('model_checkpoint_path: "/home/someone/model_logs/x/snap-0"\n')
    assert TensorBundle.open(folder).prefix == folder / "snap-0"  # renamed by Google Drive, foreign absolute path
    assert TensorBundle.open(folder / "snap-0").prefix == folder / "snap-0"
    assert TensorBundle.open(folder / "snap-0.data-00000-of-00001").prefix == folder / "snap-0"


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


@pytest.mark.slow
def test_reads_a_checkpoint_that_tensorflow_wrote(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (it is not a dependency)")
    tf1 = tf.compat.v1
    values = {"inpaint_net/conv1/kernel": np.random.default_rng(0).standard_normal((5, 5, 5, 32)).astype(np.float32),
              "inpaint_net/conv1/bias": np.arange(32, dtype=np.float32),
              "global_step": np.array(7, np.int64), "beta2_power": np.array(0.81, np.float64)}
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(name, initializer=tf.constant(value)) for name, value in values.items()]
        saver = tf1.train.Saver(variables)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            saved = saver.save(session, str(tmp_path / "model_logs" / "snap"), global_step=0)
    bundle = TensorBundle.open(tmp_path / "model_logs")  # via the `checkpoint` file TF wrote
    assert str(bundle.prefix) == saved
    assert set(bundle.entries) == set(values)
    for name, value in values.items():
        assert np.array_equal(bundle.read(name), value), name
