"""inpaint.tf_geometry: TensorFlow 1's align_corners nearest resize and 'SAME' padding, as the DeepFill v1 release uses."""

import numpy as np
import pytest
import torch

from pixelssl.inpaint.tf_geometry import align_corners_indices, resize_nearest, same_padding


def test_release_resize_reads_tf1_align_corners_rows():
    # TF1 resize_nearest_neighbor(align_corners=True): output i reads input roundf(i * (in - 1) / (out - 1)).
    assert align_corners_indices(64, 32).tolist() == [*range(0, 31, 2), *range(33, 64, 2)]  # 0, 2, ..., 30, 33, ..., 63
    assert align_corners_indices(32, 16).tolist() == [*range(0, 15, 2), *range(17, 32, 2)]  # 0, ..., 14, 17, ..., 31
    assert align_corners_indices(16, 4).tolist() == [0, 5, 10, 15]
    assert align_corners_indices(3, 5).tolist() == [0, 1, 1, 2, 2]  # 0.5 and 1.5 round away from zero (roundf)
    assert align_corners_indices(7, 1).tolist() == [0]
    assert align_corners_indices(9, 9).tolist() == list(range(9))


def test_release_resize_upsampling_by_two_reads_every_row_twice():
    for n in (1, 2, 7, 32, 64, 255, 1024):  # why nn.Upsample(scale_factor=2) is the release's gen_deconv resize
        assert np.array_equal(align_corners_indices(n, 2 * n), np.arange(2 * n) // 2), n


def test_resize_nearest_reads_those_rows_along_any_two_dims():
    x = torch.arange(4 * 6, dtype=torch.float32).view(1, 4, 6, 1)  # channels last
    out = resize_nearest(x, (2, 3), dims=(1, 2))
    assert out.shape == (1, 2, 3, 1)
    assert out[0, :, :, 0].tolist() == [[0.0, 3.0, 5.0], [18.0, 21.0, 23.0]]  # rows 0, 3; columns 0, 3 (2.5 up), 5
    assert resize_nearest(x, (4, 6), dims=(1, 2)) is x  # same size: untouched
    with pytest.raises(ValueError, match="sizes must be positive"):
        align_corners_indices(0, 3)


@pytest.mark.parametrize("size,kernel,stride,expected", [(64, 3, 2, (32, 0, 1)), (63, 3, 2, (32, 1, 1)),
                                                         (32, 5, 2, (16, 1, 2)), (31, 5, 2, (16, 2, 2)),
                                                         (16, 3, 1, (16, 1, 1)), (5, 1, 2, (3, 0, 0))])
def test_same_padding_is_tensorflows_output_size_and_padding_more_after(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
