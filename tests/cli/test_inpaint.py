"""cli.inpaint: ``pixelssl inpaint fill`` / ``serve`` on any image size, known pixels kept, one-line errors."""

import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pixelssl.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # as the inpainting tests: many small ops, one thread


@pytest.fixture
def web_extras():
    """``pixelssl inpaint serve`` needs the web extras (pip install -e '.[serve]')."""
    for name in ("starlette", "python_multipart", "uvicorn"):
        pytest.importorskip(name, reason="web extras not installed (pip install -e '.[serve]')")


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


# -------------------------------------------------------------------------------------------------------- fill
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


def test_cli_fills_a_folder_and_prints_the_count(weights, fill_folders, capsys):
    images, masks, out = fill_folders
    code = main(["inpaint", "fill", "--weights", str(weights), "--images", str(images), "--masks", str(masks),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out + captured.err
    assert "filled 2, skipped 3 (1 without a mask, 1 with a mask of another size, 1 with an unusable mask)" in text
    assert "skipped c.png" in text and "skipped d.png" in text


@pytest.mark.parametrize("extra", [[], ["--image", "x.png", "--mask", "m.png", "--images", "d", "--masks", "d"],
                                   ["--images", "d"], ["--image", "x.png", "--masks", "d"]])
def test_cli_wants_one_image_or_two_folders(weights, tmp_path, capsys, extra):
    code = main(["inpaint", "fill", "--weights", str(weights), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--images and --masks" in err[0]


# ------------------------------------------------------------------------------------------------------- serve
def test_cli_refuses_missing_or_corrupt_weights_in_one_line_before_serving(tmp_path, capsys, web_extras):
    code = main(["inpaint", "serve", "--weights", str(tmp_path / "none.safetensors"), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "does not exist" in err[0]
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code = main(["inpaint", "serve", "--weights", str(corrupt), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cannot read weights" in err[0]


def test_cli_names_the_pip_command_when_the_web_extras_are_missing(weights, monkeypatch, capsys, web_extras):
    import uvicorn

    import pixelssl.inpaint.serve  # noqa: F401  (imports starlette, which this test then hides)

    monkeypatch.setattr(uvicorn.Server, "run", lambda *args, **kwargs: pytest.fail("the server started"))
    monkeypatch.delitem(sys.modules, "pixelssl.inpaint.serve")
    for name in [n for n in sys.modules if n == "starlette" or n.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import starlette...` now fails as if it were not installed
    code = main(["inpaint", "serve", "--weights", str(weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "pip install 'pixelssl[serve]'" in err[0] and "starlette" in err[0]


def test_cli_reports_a_port_in_use_in_one_line(weights, capsys, web_extras):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        code = main(["inpaint", "serve", "--weights", str(weights), "--port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cannot listen on 127.0.0.1:" in err[0]
