"""DeepFill v1 losses on hand-computed cases."""

import pytest
import torch
from torch import nn

from pixelssl.inpaint.losses import (
    InpaintLoss,
    discounted_l1,
    gradient_penalty,
    known_region_l1,
    random_interpolates,
    spatial_discount,
    wgan_losses,
)


def test_spatial_discount_weights_at_known_positions():
    w = spatial_discount(8, 6, 0.9)
    assert w.shape == (8, 6)
    assert w[0, 0] == pytest.approx(1.0)  # on the box border
    assert w[4, 3] == pytest.approx(0.9 ** 3)  # centre: min(4, 4) = 4 rows, min(3, 3) = 3 columns -> max = 0.9**3
    assert w[2, 1] == pytest.approx(max(0.9 ** 2, 0.9 ** 1))
    assert w[7, 5] == pytest.approx(max(0.9 ** 1, 0.9 ** 1))  # i = h - 1: min(7, 1) = 1
    assert torch.allclose(spatial_discount(128, 128, 0.99)[64, 64], torch.tensor(0.99 ** 64))


def test_discounted_l1_weights_each_pixel():
    prediction = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    discount = torch.tensor([[1.0, 0.5], [0.5, 0.25]])
    assert discounted_l1(prediction, target, discount) == pytest.approx((1 + 1 + 1.5 + 1) / 4)


def test_known_region_l1_ignores_the_hole():
    prediction, target = torch.zeros(1, 1, 1, 4), torch.tensor([[[[1.0, 1.0, 5.0, 5.0]]]])
    mask = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]])
    assert known_region_l1(prediction, target, mask) == pytest.approx(2 / 4)


def test_wgan_losses():
    g, d = wgan_losses(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0]))
    assert g == pytest.approx(0.5) and d == pytest.approx(-0.5 - 2.0)


def test_gradient_penalty_of_a_linear_critic_counts_only_hole_pixels():
    weight = 0.25
    critic = lambda x: weight * x.flatten(1).sum(dim=1)  # noqa: E731 - gradient = 0.25 everywhere
    x = torch.randn(3, 2, 4, 4)
    mask = torch.zeros(3, 1, 4, 4)
    mask[:, :, :2, :2] = 1  # 4 hole pixels x 2 channels -> slope = 0.25 * sqrt(8)
    expected = (weight * 8 ** 0.5 - 1) ** 2
    assert gradient_penalty(critic, x, mask).item() == pytest.approx(expected, rel=1e-5)
    assert gradient_penalty(critic, x, torch.ones(3, 1, 4, 4)).item() == pytest.approx((weight * 32 ** 0.5 - 1) ** 2,
                                                                                      rel=1e-5)


def test_random_interpolates_lie_between_real_and_fake():
    real, fake = torch.zeros(5, 1, 2, 2), torch.ones(5, 1, 2, 2)
    mixed = random_interpolates(real, fake, torch.Generator().manual_seed(0))
    assert torch.all((mixed >= 0) & (mixed <= 1))
    assert torch.all(mixed == mixed[:, :1, :1, :1])  # one alpha per sample


class _TinyCritics(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Flatten(), nn.LazyLinear(1))
        self.global_ = nn.Sequential(nn.Flatten(), nn.LazyLinear(1))

    def forward(self, local_patch, image):
        return self.local(local_patch).squeeze(1), self.global_(image).squeeze(1)


def test_generator_total_weights_the_terms_as_the_release():
    real = torch.rand(2, 3, 16, 16) * 2 - 1
    coarse, refined = torch.zeros_like(real), torch.zeros_like(real)
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 4:12] = 1
    boxes = torch.tensor([[4, 4, 8, 8], [4, 4, 8, 8]])
    loss = InpaintLoss(box_size=8, gamma=0.99)
    critics = _TinyCritics()
    terms = loss.generator(real, coarse, refined, mask, boxes, critics)
    expected = (1.2 * terms["l1"] + 1.2 * terms["ae"] + 0.001 * (terms["g_global"] + terms["g_local"]))
    assert terms["total"].item() == pytest.approx(expected.item())
    box = real[:, :, 4:12, 4:12].abs() * spatial_discount(8, 8, 0.99)
    assert terms["l1"].item() == pytest.approx(2.2 * box.mean().item(), rel=1e-5)
    d_terms = loss.critic(real, refined, mask, boxes, critics)
    assert set(d_terms) == {"d_local", "d_global", "gp", "total"}
