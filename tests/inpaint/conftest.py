"""Inpainting tests: helper modules next to the tests (``naive_reference``, ``tf_bundle_writer``) importable, one torch
thread, a small generator and a release-shaped TensorFlow checkpoint."""

import sys
from pathlib import Path

import pytest
import torch

from pixelssl.inpaint.fill import load_generator

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tests run many small ops, which two OpenMP threads only slow down on a busy machine."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def generator(weights):
    return load_generator(weights)


@pytest.fixture(scope="module")
def release_tensors():
    """The release generator's variables (names and shapes, random values) and the extras its checkpoint holds."""
    from tf_bundle_writer import release_extras, release_generator_tensors

    return {**release_generator_tensors(), **release_extras()}


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory, release_tensors):
    """A release-like model folder: `checkpoint` naming snap-0, plus snap-0.index / .data-00000-of-00001."""
    from tf_bundle_writer import write_bundle

    folder = tmp_path_factory.mktemp("model_logs") / "release_places2_256"
    write_bundle(folder / "snap-0", release_tensors)
    (folder / "checkpoint").write_text('model_checkpoint_path: "snap-0"\nall_model_checkpoint_paths: "snap-0"\n')
    return folder
