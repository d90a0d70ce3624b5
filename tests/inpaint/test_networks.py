"""Generator and critics: shapes, value range, the no-attention ablation, parameter count."""

import torch

from pixelssl.inpaint.networks import InpaintCritics, InpaintGenerator, parameter_count


def _inputs(size=32, batch=2):
    image = torch.rand(batch, 3, size, size) * 2 - 1
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, 8:20, 10:24] = 1
    return image, mask


def test_generator_outputs_are_clipped_images_and_a_flow_picture():
    generator = InpaintGenerator(cnum=8)
    out = generator(*_inputs(), return_flow=True)
    assert out.coarse.shape == out.refined.shape == (2, 3, 32, 32)
    assert out.refined.abs().max() <= 1 and out.coarse.abs().max() <= 1
    assert out.flow.shape == (2, 3, 8, 8)


def test_ablation_has_the_same_parameters_and_no_flow():
    full, ablation = InpaintGenerator(cnum=8), InpaintGenerator(cnum=8, use_contextual_attention=False)
    assert parameter_count(full) == parameter_count(ablation)
    ablation.load_state_dict(full.state_dict())
    assert ablation(*_inputs(), return_flow=True).flow is None


def test_release_sized_generator_parameter_count():
    assert parameter_count(InpaintGenerator(cnum=32)) == 3_601_542  # coarse 1.448M + refinement 2.153M


def test_critics_score_each_sample():
    critics = InpaintCritics(image_size=32, box_size=16, cnum=8)
    image, _ = _inputs()
    local, global_ = critics(image[:, :, :16, :16], image)
    assert local.shape == global_.shape == (2,)
