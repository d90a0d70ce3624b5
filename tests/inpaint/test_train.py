"""inpaint.train: a short run lowers the hole L1, resume is bit-identical, each critic step draws its own batch."""

import pytest
import torch

from pixelssl.config import load_config, to_dict
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.fill import load_generator
from pixelssl.inpaint.images import RandomCrops
from pixelssl.inpaint.networks import InpaintGenerator, SameConv2d
from pixelssl.inpaint.train import build_generator, train_inpainting

TINY = ["data.image_size=32", "data.synthetic.size=32", "data.synthetic.num_images=64", "data.val_images=8",
        "mask.box_size=16", "mask.max_delta=4", "model.cnum=8", "model.critic_cnum=8", "train.batch_size=4",
        "train.critic_steps=1", "train.tensorboard=false", "train.progress=false", "train.log_every=1"]


def _config(tmp_path, name, *extra):
    return load_config(InpaintConfig, overrides=[*TINY, f"run.output_dir={tmp_path}", f"run.name={name}", *extra])


def test_short_training_lowers_the_held_out_hole_l1(tmp_path):
    result = train_inpainting(_config(tmp_path, "short", "train.max_steps=80", "train.lr=0.001",
                                      "train.batch_size=8"))
    (start_step, before), (end_step, after) = result.held_out_l1[0], result.held_out_l1[-1]
    assert (start_step, end_step) == (0, 80)
    # 0.177 -> 0.156 here (0.147 before stage 2 saw the coarse fill, as released): from a grey guess towards the
    # surrounding content
    assert after < 0.92 * before
    assert load_generator(result.weights_path).cnum == 8
    assert (result.run_dir / "metrics.jsonl").read_text().count("\n") >= 80


def test_resume_continues_bit_identically(tmp_path):
    whole = train_inpainting(_config(tmp_path, "whole", "train.max_steps=4"))
    train_inpainting(_config(tmp_path, "split", "train.max_steps=2"))
    resumed = train_inpainting(resume=tmp_path / "split", overrides=["train.max_steps=4"])
    a = torch.load(whole.run_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("generator", "critics"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["held_out_l1"][-1] == b["held_out_l1"][-1]


@pytest.mark.parametrize("mode,batches_per_step", [("fresh", 6), ("reuse", 1)])
def test_each_critic_step_draws_a_fresh_batch_and_completion(tmp_path, monkeypatch, mode, batches_per_step):
    items, completions = [], []
    load = RandomCrops.__getitem__
    forward = InpaintGenerator.forward

    def counting_load(self, item):
        items.append(item)
        return load(self, item)

    def counting_forward(self, image, mask, return_flow=False):
        if self.training and not torch.is_grad_enabled():  # a completion for a critic step (held-out runs in eval)
            completions.append(image.shape[0])
        return forward(self, image, mask, return_flow)

    monkeypatch.setattr(RandomCrops, "__getitem__", counting_load)
    monkeypatch.setattr(InpaintGenerator, "forward", counting_forward)
    train_inpainting(_config(tmp_path, mode, "train.max_steps=2", "train.critic_steps=5",
                             f"train.critic_batches={mode}"))
    assert len(items) == 2 * batches_per_step * 4  # release: 5 critic batches + the generator's own, per step
    assert len(set(items)) == len(items)  # 48 of the 64 images of epoch 0: every batch is new
    assert completions == ([4] * 10 if mode == "fresh" else [])


def test_weights_saved_before_the_release_choices_load_with_the_old_behaviour():
    saved = to_dict(load_config(InpaintConfig, overrides=["model.cnum=8"]).model)
    for key in ("downsample", "padding", "init"):
        del saved[key]
    generator = build_generator(saved)
    assert generator.refine.downsample == "stride"
    assert isinstance(generator.coarse.encoder[1][0], torch.nn.Conv2d)
    assert not isinstance(generator.coarse.encoder[1][0], SameConv2d)  # symmetric padding, as it was trained
