"""``pixelssl inpaint fill``: any image size, known pixels kept, one-line errors for bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.cli import main
from pixelssl.config import load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.fill import fill_image, load_generator, pad_to_multiple
from pixelssl.inpaint.train import build_generator, save_generator


@pytest.fixture
def weights(tmp_path):
    cfg = load_config(InpaintConfig, overrides=["model.cnum=8"])
    torch.manual_seed(0)
    path = tmp_path / "generator.safetensors"
    save_generator(build_generator(cfg.model), cfg.model, path)
    return path


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture
def image_and_mask(tmp_path):
    rng = np.random.default_rng(0)
    image = _png(tmp_path / "in.png", rng.integers(0, 256, (29, 37, 3), dtype=np.uint8))
    mask = np.zeros((29, 37), np.uint8)
    mask[8:20, 10:25] = 255
    return image, _png(tmp_path / "mask.png", mask)


def test_fill_keeps_size_and_known_pixels_and_writes_the_flow(weights, image_and_mask, tmp_path, capsys):
    image, mask = image_and_mask
    out, flow = tmp_path / "out" / "filled.png", tmp_path / "flow.png"
    code = main(["inpaint", "fill", "--weights", str(weights), "--image", image, "--mask", mask, "--out", str(out),
                 "--flow", str(flow)])
    assert code == 0, capsys.readouterr().err
    filled = np.asarray(Image.open(out))
    original = np.asarray(Image.open(image))
    hole = np.asarray(Image.open(mask)) > 127
    assert filled.shape == original.shape
    assert np.array_equal(filled[~hole], original[~hole])
    assert np.asarray(Image.open(flow)).shape == original.shape


@pytest.mark.parametrize("mask_array,message", [
    (np.zeros((29, 38), np.uint8), "is 38x29 but image"),
    (np.zeros((29, 37), np.uint8), "no hole pixels"),
    (np.full((29, 37), 255, np.uint8), "whole image"),
])
def test_fill_reports_bad_masks_in_one_line(weights, image_and_mask, tmp_path, capsys, mask_array, message):
    image, _ = image_and_mask
    mask = _png(tmp_path / "bad_mask.png", mask_array)
    code = main(["inpaint", "fill", "--weights", str(weights), "--image", image, "--mask", mask,
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert message in err[0] and "bad_mask.png" in err[0]


def test_fill_reports_missing_or_foreign_weights(image_and_mask, tmp_path, capsys):
    image, mask = image_and_mask
    code = main(["inpaint", "fill", "--weights", str(tmp_path / "none.safetensors"), "--image", image,
                 "--mask", mask, "--out", str(tmp_path / "o.png")])
    assert code == 1 and "does not exist" in capsys.readouterr().err
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    code = main(["inpaint", "fill", "--weights", str(tmp_path / "other.safetensors"), "--image", image,
                 "--mask", mask, "--out", str(tmp_path / "o.png")])
    assert code == 1 and "no pixelssl_inpaint metadata" in capsys.readouterr().err


def test_padding_to_a_multiple_of_eight_mirrors_and_crops_back(weights):
    x = torch.arange(5 * 11, dtype=torch.float32).view(1, 1, 5, 11)
    padded = pad_to_multiple(x)
    assert padded.shape == (1, 1, 8, 16)
    assert torch.equal(padded[..., :5, :11], x)
    generator = load_generator(weights)
    image = torch.randint(0, 256, (3, 13, 21), dtype=torch.uint8)
    hole = torch.zeros(13, 21, dtype=torch.bool)
    hole[3:9, 4:12] = True
    filled, flow = fill_image(generator, image, hole)
    assert filled.shape == image.shape and flow is None
    assert torch.equal(filled[:, ~hole], image[:, ~hole])
