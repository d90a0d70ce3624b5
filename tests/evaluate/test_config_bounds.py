"""The evaluation and inpainting configs declare their bounds and choices with each key (``opt(..., ge=1)``): a value
out of them is a one-line ConfigError naming the full dotted key and what is allowed, from the command line and
from the Python API alike; the checks that relate several keys stay in each schema's validator."""

from __future__ import annotations

import pytest

from pixelssl.config import ConfigError, describe, load_config
from pixelssl.evaluate.classification import ClsProbeConfig
from pixelssl.evaluate.common import typed_config
from pixelssl.evaluate.detection import DetectionConfig
from pixelssl.evaluate.probe import ProbeConfig
from pixelssl.evaluate.segmentation import FinetuneConfig
from pixelssl.evaluate.splits import SyntheticEvalSection
from pixelssl.inpaint.config import InpaintConfig

BAD_VALUES = [
    # declared with the key
    (FinetuneConfig, ["head=fcm"], "'head': 'fcm' is not one of fcn, fpn; did you mean 'fcn'?"),
    (FinetuneConfig, ["fpn_scale_channels=0"], "'fpn_scale_channels': must be >= 1 (got 0)"),
    (FinetuneConfig, ["output_stride=4"], "'output_stride': must be 8, 16 or 32 (got 4)"),
    (FinetuneConfig, ["dropout=1"], "'dropout': must be in [0, 1) (got 1.0)"),
    (FinetuneConfig, ["batch_size=1"], "'batch_size': must be >= 2 (got 1)"),
    (FinetuneConfig, ["lr=0"], "'lr': must be > 0 (got 0.0)"),
    (FinetuneConfig, ["image_size=31"], "'image_size': must be 0 or >= 32 (got 31)"),
    (FinetuneConfig, ["inference=sliding"], "'inference': 'sliding' is not one of whole, slide; did you mean 'slide'?"),
    (FinetuneConfig, ["augmentation.flip_prob=1.5"], "'augmentation.flip_prob': must be in [0, 1] (got 1.5)"),
    (FinetuneConfig, ["eval_every=-1"], "'eval_every': must be >= 0 (got -1)"),
    (DetectionConfig, ["norm=batch"], "'norm': 'batch' is not one of frozen, sync, bn"),
    (DetectionConfig, ["trainable_layers=6"], "'trainable_layers': must be in 0..5 (got 6)"),
    (DetectionConfig, ["min_size=31"], "'min_size': must be >= 32 (got 31)"),
    (DetectionConfig, ["score_thresh=1"], "'score_thresh': must be in [0, 1) (got 1.0)"),
    (DetectionConfig, ["warmup_factor=0"], "'warmup_factor': must be in (0, 1] (got 0.0)"),
    (DetectionConfig, ["roi_batch_size=0"], "'roi_batch_size': must be >= 1 (got 0)"),
    (DetectionConfig, ["clip_grad_norm=-1"], "'clip_grad_norm': must be >= 0 (got -1.0)"),
    (ProbeConfig, ["optimizer=sdg"], "'optimizer': 'sdg' is not one of adamw, sgd; did you mean 'sgd'?"),
    (ProbeConfig, ["train_label_stride=0"], "'train_label_stride': must be >= 1 (got 0)"),
    (ProbeConfig, ["image_size=16"], "'image_size': must be 0 or >= 32 (got 16)"),
    (ClsProbeConfig, ["epochs=0"], "'epochs': must be >= 1 (got 0)"),  # redeclared by the subclass: bound kept
    (ClsProbeConfig, ["lr=-0.1"], "'lr': must be > 0 (got -0.1)"),
    (ClsProbeConfig, ["crop=16"], "'crop': must be >= 32 (got 16)"),
    (ClsProbeConfig, ["extract_batch_size=0"], "'extract_batch_size': must be >= 1 (got 0)"),
    (SyntheticEvalSection, ["synthetic.val_images=0"], "'synthetic.val_images': must be >= 1 (got 0)"),
    (SyntheticEvalSection, ["synthetic.size=31"], "'synthetic.size': must be >= 32 (got 31)"),
    (SyntheticEvalSection, ["synthetic.num_classes=13"], "'synthetic.num_classes': must be in 1..12 (got 13)"),
    (InpaintConfig, ["data.val_images=0"], "'data.val_images': must be >= 1 (got 0)"),
    (InpaintConfig, ["data.image_size=16"], "'data.image_size': must be >= 32 (got 16)"),
    (InpaintConfig, ["data.synthetic.size=15"], "'data.synthetic.size': must be >= 16 (got 15)"),
    (InpaintConfig, ["data.synthetic.num_images=0"], "'data.synthetic.num_images': must be >= 1 (got 0)"),
    (InpaintConfig, ["mask.kind=strok"], "'mask.kind': 'strok' is not one of rect, stroke, mixed; did you mean 'stroke'?"),
    (InpaintConfig, ["mask.margin=-1"], "'mask.margin': must be >= 0 (got -1)"),
    (InpaintConfig, ["model.cnum=0"], "'model.cnum': must be >= 2 (got 0)"),
    (InpaintConfig, ["model.ca_rate=3"], "'model.ca_rate': must be 1, 2 or 4 (got 3)"),
    (InpaintConfig, ["model.ca_softmax_scale=0"], "'model.ca_softmax_scale': must be > 0 (got 0.0)"),
    (InpaintConfig, ["loss.gamma=0"], "'loss.gamma': must be in (0, 1] (got 0.0)"),
    (InpaintConfig, ["loss.gp_lambda=-1"], "'loss.gp_lambda': must be >= 0 (got -1.0)"),
    (InpaintConfig, ["train.max_steps=0"], "'train.max_steps': must be >= 1 (got 0)"),
    (InpaintConfig, ["train.time_budget=-1"], "'train.time_budget': must be >= 0 (got -1.0)"),
    (InpaintConfig, ["train.keep_checkpoints=-1"], "'train.keep_checkpoints': must be >= 0 (got -1)"),
    # relating several keys, or beyond a bound: in the schema's validator
    (FinetuneConfig, ["steps=10", "warmup_steps=10"], "'warmup_steps': must be < steps (10) (got 10)"),
    (FinetuneConfig, ["slide_stride=[0,4]"], "'slide_stride': must be [height, width] with both >= 1"),
    (FinetuneConfig, ["augmentation.crop_size=[16,16]"], "'augmentation.crop_size': must be [height, width] with both"),
    (DetectionConfig, ["min_size=1400"], "'min_size': must be <= max_size (1333) (got 1400)"),
    (DetectionConfig, ["norm=bn", "batch_size=1"], "'batch_size': norm=bn needs >= 2 images per step"),
    (DetectionConfig, ["anchor_sizes=[8,16]"], "'anchor_sizes': must be empty or 5 sizes >= 1"),
    (DetectionConfig, ["lr_milestones=[0.5,1.0]"], "'lr_milestones': fractions must be in (0, 1)"),
    (ProbeConfig, ["levels=[c6]"], "'levels': must be a non-empty list of c2, c3, c4, c5"),
    (ProbeConfig, ["augment=true", "batch_size=1"], "'batch_size': must be >= 2 with augment (BatchNorm)"),
    (ClsProbeConfig, ["crop=300"], "'resize': must be >= crop (300), got 256"),
    (InpaintConfig, ["data.image_size=40"], "'data.image_size': must be a multiple of 16 (got 40)"),
    (InpaintConfig, ["mask.box_size=24"], "'mask.box_size': must be a multiple of 16 (got 24)"),
    (InpaintConfig, ["mask.box_size=256", "mask.margin=8"], "'mask.box_size': box 256 + 2 * margin 8 must fit"),
    (InpaintConfig, ["mask.max_delta=128"], "'mask.max_delta': must be < box_size (128) (got 128)"),
    (InpaintConfig, ["model.cnum=3"], "'model.cnum': must be even (got 3)"),
    (InpaintConfig, ["model.ca_fuse_k=2"], "'model.ca_fuse_k': must be odd (got 2)"),
    (InpaintConfig, ["train.betas=[0.5,1.0]"], "'train.betas': must be [beta1, beta2] in [0, 1)"),
    (InpaintConfig, ["train.device=tpu"], "'train.device': 'tpu' is not auto, cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize(("schema", "overrides", "message"), BAD_VALUES,
                         ids=[f"{s.__name__}:{' '.join(o)}" for s, o, _ in BAD_VALUES])
def test_a_value_out_of_bounds_is_a_config_error_naming_the_key(schema, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(schema, None, overrides)
    assert f"config key {message}" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("schema", "values", "message"), [
    (FinetuneConfig, {"dropout": 1.0}, "config key 'dropout': must be in [0, 1) (got 1.0)"),
    (FinetuneConfig, {"warmup_steps": 5, "steps": 5}, "config key 'warmup_steps': must be < steps (5)"),
    (DetectionConfig, {"hflip": 2.0}, "config key 'hflip': must be in [0, 1] (got 2.0)"),
    (ProbeConfig, {"epochs": 0}, "config key 'epochs': must be >= 1 (got 0)"),
    (ClsProbeConfig, {"batch_size": 0}, "config key 'batch_size': must be >= 1 (got 0)"),
])
def test_the_python_api_checks_the_declared_bounds_too(schema, values, message):
    from pixelssl.config.schema import VALIDATORS

    with pytest.raises(ConfigError) as info:  # what finetune_segmentation(..., config) & co. do with their config
        typed_config(schema(**values), schema, VALIDATORS[schema])
    assert message in str(info.value)


def test_unknown_keys_suggest_the_nearest_one_with_its_section():
    with pytest.raises(ConfigError, match=r"'synthetic\.sise' in the command line; did you mean 'synthetic\.size'\?"):
        load_config(SyntheticEvalSection, None, ["synthetic.sise=64"])
    with pytest.raises(ConfigError, match=r"'model\.ca_rat' in the command line; did you mean 'model\.ca_rate'\?"):
        load_config(InpaintConfig, None, ["model.ca_rat=2"])


@pytest.mark.parametrize(("schema", "lines"), [
    (FinetuneConfig, ["head = 'fpn'  (fcn | fpn)", "dropout = 0.1  (in [0, 1))", "image_size = 0  (0 or >= 32)",
                      "augmentation.flip_prob = 0.5  (in [0, 1])"]),
    (DetectionConfig, ["trainable_layers = 3  (in 0..5)", "warmup_factor = 0.001  (in (0, 1])"]),
    (InpaintConfig, ["data.synthetic.size = 128  (>= 16)", "model.ca_rate = 2  (1 | 2 | 4)",
                     "loss.gamma = 0.99  (in (0, 1])"]),
    (SyntheticEvalSection, ["synthetic.num_classes = 6  (in 1..12)"]),
])
def test_describe_lists_the_declared_bounds(schema, lines):
    text = describe(schema).splitlines()
    for line in lines:
        assert line in text
