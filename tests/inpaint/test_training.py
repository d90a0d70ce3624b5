"""Training: a short run lowers the held-out hole L1; a resumed run is bit-identical to an uninterrupted one."""

import torch

from pixelssl.config import load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.fill import load_generator
from pixelssl.inpaint.train import train_inpainting

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
    assert after < 0.88 * before  # 0.179 -> 0.148 here: from a grey guess towards the surrounding content
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
