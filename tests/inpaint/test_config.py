"""inpaint.config: the inpainting schema defaults to the DeepFill v1 release's choices; unknown choices name the key."""

import pytest

from pixelssl.config import ConfigError, load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.train import build_generator


def test_config_defaults_are_the_release_choices():
    cfg = load_config(InpaintConfig)
    assert (cfg.model.downsample, cfg.model.padding, cfg.model.init) == ("release", "same", "glorot")
    assert (cfg.train.critic_steps, cfg.train.critic_batches) == (5, "fresh")
    assert cfg.loss.gamma == 0.99  # the paper's, chosen by benchmarks/inpaint_quality.py (the release config: 0.9)
    generator = build_generator(cfg.model)
    assert generator.refine.downsample == generator.refine.attention.downsample == "release"


@pytest.mark.parametrize("key,value", [("model.downsample", "bilinear"), ("model.padding", "reflect"),
                                       ("model.init", "he"), ("train.critic_batches", "some")])
def test_unknown_choices_are_config_errors_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(InpaintConfig, overrides=[f"{key}={value}"])
