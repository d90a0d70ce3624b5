"""inpaint.tf_checkpoint: a TensorFlow tensor bundle read without TensorFlow, every tensor exactly, from any of its names."""

import numpy as np
import pytest
from tf_bundle_writer import write_bundle

from pixelssl.inpaint.tf_checkpoint import TensorBundle


def _copy_bundle(tmp_path, tensors, **options):
    folder = tmp_path / "ckpt"
    write_bundle(folder / "snap-0", tensors, **options)
    return folder


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
