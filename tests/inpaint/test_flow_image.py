"""inpaint.flow_image: attention offsets as the release's colour wheel: white for none, hue by direction, fading by length."""

import torch

from pixelssl.inpaint.contextual_attention import ContextualAttention
from pixelssl.inpaint.flow_image import color_wheel, flow_to_image


def test_flow_picture_is_white_for_zero_offsets_and_coloured_by_direction():
    zero = flow_to_image(torch.zeros(1, 2, 3, 3))
    assert torch.allclose(zero, torch.ones(1, 3, 3, 3))
    assert color_wheel().shape == (55, 3)
    offsets = torch.zeros(1, 2, 1, 3)
    offsets[0, 1, 0, 1] = -2  # pointing left at full length: angle 0.5 pi, i.e. 3/4 around the 55-colour wheel
    offsets[0, 1, 0, 2] = -1  # half as long: the same hue, halfway to white
    picture = flow_to_image(offsets)[0, :, 0]
    wheel = color_wheel() / 255
    left = (wheel[40] + wheel[41]) / 2  # position 0.75 * 54 = 40.5
    assert torch.allclose(picture[:, 1], left, atol=1 / 255)
    assert torch.allclose(picture[:, 2], 1 - 0.5 * (1 - left), atol=1 / 255)
    layer = ContextualAttention()
    out, flow = layer(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.zeros(1, 1, 8, 8))
    assert flow.shape == (1, 3, 8, 8) and flow.min() >= 0 and flow.max() <= 1
