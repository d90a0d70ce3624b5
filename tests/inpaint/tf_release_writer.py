"""Run with a Python that has TensorFlow: ``python tf_release_writer.py FOLDER`` saves the release generator's
variables (names and shapes of JiahuiYu/generative_inpainting, random values) plus the extras a release checkpoint
holds with TensorFlow's own ``tf.compat.v1.train.Saver`` into FOLDER (``checkpoint``, ``snap-0.index``,
``snap-0.data-*``), and the values as ``values.npz`` for the test to compare with. Needs only numpy and TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tf_bundle_writer import release_extras, release_generator_tensors  # noqa: E402


def main(folder: Path) -> None:
    values = {**release_generator_tensors(), **release_extras()}
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.get_variable(name, initializer=tf.constant(value)) for name, value in values.items()]
        saver = tf1.train.Saver(variables)
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            saver.save(session, str(folder / "snap"), global_step=0)  # writes snap-0.* and `checkpoint`
    np.savez(folder / "values.npz", **{name.replace("/", "|"): value for name, value in values.items()})
    print(tf.__version__)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
