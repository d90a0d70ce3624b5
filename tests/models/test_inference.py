import torch
from torch import nn

from pixelssl.models.backbones import build_backbone
from pixelssl.models.inference import fold_batchnorm


def _randomise_batchnorm(module: nn.Module) -> None:
    """Running statistics and affine parameters far from their defaults, so folding has something to fold."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def test_folded_resnet_gives_the_eval_mode_features_and_leaves_the_original_alone():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    _randomise_batchnorm(backbone)
    backbone.train()
    x = torch.randn(2, 3, 64, 64)
    folded = fold_batchnorm(backbone)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # stem, blocks and downsamples
    assert sum(isinstance(m, nn.BatchNorm2d) for m in backbone.modules()) == 20 and backbone.training
    with torch.no_grad():
        expected = backbone.eval().forward_levels(x, ("c4", "c5"))
        got = folded.forward_levels(x, ("c4", "c5"))
    for level in ("c4", "c5"):
        assert torch.allclose(got[level], expected[level], rtol=1e-4, atol=1e-4 * expected[level].abs().max())


def test_only_a_batchnorm_registered_right_after_its_conv_is_folded():
    conv = nn.Conv2d(3, 4, 3)
    relu_between = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    no_stats = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    folded = fold_batchnorm(nn.Sequential(conv, nn.BatchNorm2d(4)))
    assert isinstance(folded[1], nn.Identity)
    assert isinstance(fold_batchnorm(relu_between)[2], nn.BatchNorm2d)
    assert isinstance(fold_batchnorm(no_stats)[1], nn.BatchNorm2d)
