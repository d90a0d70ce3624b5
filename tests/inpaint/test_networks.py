"""Generator and critics: shapes, value range, the no-attention ablation, parameter count, the release's padding,
initialisation and mask resize."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelssl.inpaint.networks import InpaintCritics, InpaintGenerator, SameConv2d, make_conv, parameter_count


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


# ------------------------------------------------------------------- the release's padding, init and resize
def tf_same(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME' along one axis: pad_total = max((ceil(n / s) - 1) * s + k - n, 0), before = total // 2."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("n,k,s,pads", [(64, 3, 2, (0, 1)), (63, 3, 2, (1, 1)), (32, 5, 2, (1, 2)),
                                        (31, 5, 2, (2, 2)), (16, 3, 1, (1, 1)), (8, 5, 1, (2, 2))])
def test_same_padding_of_hand_cases(n, k, s, pads):
    assert tf_same(n, k, s) == pads
    conv = SameConv2d(1, 1, k, s)
    left, right, top, bottom = conv.same_pads(n, n)
    assert (top, bottom) == (left, right) == pads
    assert conv(torch.zeros(1, 1, n, n)).shape[-2:] == (math.ceil(n / s),) * 2


def test_same_padding_matches_the_formula_for_every_size():
    for n, k, s, d in itertools.product(range(1, 40), (3, 5), (1, 2), (1, 2)):
        conv = SameConv2d(1, 1, k, s, d)
        assert conv.same_pads(n, n + 1) == (*tf_same(n + 1, d * (k - 1) + 1, s), *tf_same(n, d * (k - 1) + 1, s))
        assert conv(torch.zeros(1, 1, n, n + 1)).shape[-2:] == (math.ceil(n / s), math.ceil((n + 1) / s))


def test_stride_two_conv_on_an_even_size_pads_zero_before_and_one_after():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 10)
    same = make_conv(3, 4, 3, 2, padding="same")
    symmetric = make_conv(3, 4, 3, 2, padding="symmetric")
    symmetric.load_state_dict(same.state_dict())  # same parameter names and shapes
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), same.weight, same.bias, stride=2)
    assert torch.allclose(same(x), expected, atol=1e-6)
    assert torch.allclose(symmetric(x), F.conv2d(x, same.weight, same.bias, stride=2, padding=1), atol=1e-6)
    assert not torch.allclose(same(x), symmetric(x))


def test_glorot_init_draws_within_the_bound_with_zero_biases():
    torch.manual_seed(0)
    generator, critics = InpaintGenerator(cnum=8), InpaintCritics(image_size=32, box_size=16, cnum=8)
    for module in (generator, critics):
        layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert layers
        for layer in layers:
            assert torch.count_nonzero(layer.bias) == 0
            receptive = layer.weight[0, 0].numel()
            bound = math.sqrt(6 / ((layer.weight.shape[1] + layer.weight.shape[0]) * receptive))
            assert layer.weight.abs().max() <= bound
            if layer.weight.numel() >= 10_000:  # a uniform on (-a, a) has std a / sqrt(3)
                assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    torch_init = InpaintGenerator(cnum=8, init="torch")
    assert torch.count_nonzero(torch_init.coarse.encoder[0][0].bias) > 0  # PyTorch's default: uniform biases


def test_options_keep_parameter_names_and_shapes():
    reference = {k: v.shape for k, v in InpaintGenerator(cnum=8).state_dict().items()}
    for options in ({"downsample": "stride"}, {"padding": "symmetric"}, {"init": "torch"}):
        assert {k: v.shape for k, v in InpaintGenerator(cnum=8, **options).state_dict().items()} == reference
    critics = {k: v.shape for k, v in InpaintCritics(32, 16, 8).state_dict().items()}
    assert {k: v.shape for k, v in InpaintCritics(32, 16, 8, padding="symmetric").state_dict().items()} == critics


@pytest.mark.parametrize("options", [{"downsample": "stride"}, {"padding": "symmetric"}])
def test_each_release_choice_changes_the_output(options):
    torch.manual_seed(0)
    release = InpaintGenerator(cnum=8)
    other = InpaintGenerator(cnum=8, **options)
    other.load_state_dict(release.state_dict())
    image, mask = _inputs(size=64, batch=1)
    with torch.no_grad():
        assert not torch.allclose(release(image, mask).refined, other(image, mask).refined)


def test_generator_mask_reaches_the_attention_branch_by_the_release_resize():
    captured = {}

    def spy(module, args):
        captured["mask"] = args[2]

    image = torch.zeros(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 21, 21] = 1  # release (64 -> 16 reads rows round(i * 63 / 15)): row/column 21 is read by i = 5
    for downsample, expected in (("release", 1.0), ("stride", 0.0)):  # stride reads rows 0, 4, ..., 60 only
        generator = InpaintGenerator(cnum=8, downsample=downsample)
        generator.refine.attention.register_forward_pre_hook(spy)
        with torch.no_grad():
            generator(image, mask)
        small = captured["mask"]
        assert small.shape == (1, 1, 16, 16)
        assert small.sum().item() == expected
        if expected:
            assert small[0, 0, 5, 5] == 1


def test_refinement_stage_sees_the_coarse_fill_inside_the_hole():
    """Release stage 2 input: [coarse * mask + incomplete * (1 - mask), ones, ones * mask], hole not zeroed again."""
    torch.manual_seed(0)
    generator = InpaintGenerator(cnum=4).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    seen = {}
    generator.refine.register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))  # returns None: args kept
    with torch.no_grad():
        out = generator(image, mask)
    x = seen["x"]
    assert x.shape[1] == 5
    expected = out.coarse * mask + image * (1 - mask)
    assert torch.equal(x[:, :3], expected)
    assert float(x[:, :3][mask.expand(-1, 3, -1, -1) > 0].abs().sum()) > 0  # the hole carries the coarse fill
    assert torch.equal(x[:, 3:4], torch.ones_like(mask)) and torch.equal(x[:, 4:5], mask)
