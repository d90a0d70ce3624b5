"""models.heads: the 1x1-conv MLP acts on every pixel as the linear MLP acts on one vector; BatchNorm on request."""

import torch
from torch import nn

from pixelssl.models.heads import MLP, ConvMLP, global_pool


def test_conv_mlp_is_the_linear_mlp_applied_at_every_pixel():
    torch.manual_seed(0)
    conv, linear = ConvMLP(6, 5, 4).eval(), MLP(6, 5, 4, batch_norm=True).eval()
    with torch.no_grad():
        for c, lin in zip(conv, linear):  # copy conv -> linear, layer by layer
            if isinstance(c, nn.Conv2d):
                lin.weight.copy_(c.weight[:, :, 0, 0])
                lin.bias.copy_(c.bias)
            elif isinstance(c, nn.BatchNorm2d):
                c.running_mean.uniform_(-1, 1)
                c.running_var.uniform_(0.5, 2)
                lin.load_state_dict(c.state_dict())
        x = torch.randn(2, 6, 3, 4)
        per_pixel = linear(x.permute(0, 2, 3, 1).reshape(-1, 6)).reshape(2, 3, 4, 4).permute(0, 3, 1, 2)
        torch.testing.assert_close(conv(x), per_pixel)


def test_batch_norm_is_a_switch_with_each_heads_default():
    kinds = lambda head: [type(m) for m in head]  # noqa: E731
    assert kinds(ConvMLP(8, 4, 2)) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]  # PixPro's projector
    assert kinds(ConvMLP(8, 4, 2, batch_norm=False)) == [nn.Conv2d, nn.ReLU, nn.Conv2d]  # DenseCL's dense head
    assert kinds(MLP(8, 4, 2)) == [nn.Linear, nn.ReLU, nn.Linear]  # MoCo-v2's head
    assert kinds(MLP(8, 4, 2, batch_norm=True)) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert ConvMLP(8, 4, 2)[0].bias is not None  # biases on, as in the release


def test_global_pool_is_the_mean_over_positions():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert global_pool(x).shape == (2, 3)
    assert global_pool(x)[1, 2].item() == x[1, 2].mean().item() == 21.5
