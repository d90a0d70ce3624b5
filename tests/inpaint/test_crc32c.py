"""inpaint.crc32c: CRC-32C (Castagnoli) as TensorFlow computes and masks it, chunk by chunk as in one pass."""

import numpy as np
from tf_bundle_writer import crc32c as writer_crc32c

from pixelssl.inpaint.crc32c import crc32c, mask_crc, unmask_crc


def test_crc32c_is_castagnoli_and_masked_like_tensorflow():
    assert crc32c(b"123456789") == writer_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 200_003, dtype=np.uint8).tobytes()  # vectorised lanes + tail
    assert crc32c(data) == writer_crc32c(data)
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c(data)
    assert all(unmask_crc(mask_crc(c)) == c for c in (0, 1, 0xE3069283, 0xFFFFFFFF))
