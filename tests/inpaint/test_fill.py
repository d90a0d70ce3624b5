"""inpaint.fill: any image size (padding, crops per hole) and folders, known pixels kept bit for bit, no partial files."""

import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image

import pixelssl.inpaint.fill as fill_module
from pixelssl.errors import PixelSSLError
from pixelssl.inpaint import fill_folder, fill_image
from pixelssl.inpaint.fill import Region, fill_images, fill_regions, load_generator, pad_to_multiple, resolve_strategy


def _image(height, width, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8))


def _hole(height, width, *boxes):
    hole = torch.zeros(height, width, dtype=torch.bool)
    for top, left, h, w in boxes:
        hole[top:top + h, left:left + w] = True
    return hole


# ------------------------------------------------------------------------------------- whole, crop or auto
def test_auto_is_crop_for_images_larger_than_the_working_size():
    assert resolve_strategy("auto", 600, 400) == "crop"
    assert resolve_strategy("auto", 512, 300) == "whole"
    assert resolve_strategy("whole", 4096, 3072) == "whole"
    with pytest.raises(PixelSSLError, match="unknown fill strategy"):
        resolve_strategy("tiles", 10, 10)


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


# ------------------------------------------------------------------------------------------ crop strategy
def test_4096_photo_with_a_256_hole_keeps_known_pixels_bit_identical(generator):
    image, hole = _image(3072, 4096), _hole(3072, 4096, (1500, 2500, 256, 256))
    start = time.perf_counter()
    filled, _ = fill_image(generator, image, hole)  # auto -> crop
    seconds = time.perf_counter() - start
    assert filled.shape == image.shape
    assert torch.equal(filled[:, ~hole], image[:, ~hole])
    assert (filled[:, hole] != image[:, hole]).any(dim=0).float().mean() > 0.99
    # The hole is what the generator paints on the 512 x 512 crop around it, nothing else.
    region = Region(1372, 2372, 1884, 2884)
    crop, _ = fill_images(generator, region.of(image).unsqueeze(0), region.of(hole).view(1, 1, 512, 512))
    assert torch.equal(region.of(filled), torch.where(region.of(hole), crop[0], region.of(image)))
    assert seconds < 60  # a cnum-8 model; the release-sized timing is in docs/inpainting.md


def test_crop_fill_equals_the_whole_image_fill_when_the_crop_covers_the_image(generator):
    image, hole = _image(48, 40, seed=1), _hole(48, 40, (10, 8, 28, 24))  # margin 32 reaches every border
    assert fill_regions(hole) == [Region(0, 0, 48, 40)]
    cropped, cropped_flow = fill_image(generator, image, hole, return_flow=True, strategy="crop")
    whole, whole_flow = fill_image(generator, image, hole, return_flow=True, strategy="whole")
    assert torch.equal(cropped, whole)
    assert torch.equal(cropped_flow, whole_flow)


def test_crops_larger_than_the_working_size_are_filled_scaled_down(generator, monkeypatch):
    seen = []
    original = fill_module.fill_images

    def spy(gen, images, holes, return_flow=False):
        seen.append(tuple(images.shape[-2:]))
        return original(gen, images, holes, return_flow)

    monkeypatch.setattr(fill_module, "fill_images", spy)
    image, hole = _image(300, 360, seed=2), _hole(300, 360, (100, 120, 80, 90), (20, 300, 10, 10))
    filled, flow = fill_image(generator, image, hole, return_flow=True, strategy="crop", working_size=64)
    assert sorted(seen) == [(54, 64), (60, 64)]  # crops 62 x 74 and 170 x 180, longer side scaled to 64
    assert torch.equal(filled[:, ~hole], image[:, ~hole])
    assert (filled[:, hole] != image[:, hole]).any(dim=0).float().mean() > 0.99
    assert flow.shape == image.shape
    outside = torch.ones(300, 360, dtype=torch.bool)
    for region in fill_regions(hole):
        region.of(outside).fill_(False)
    assert (flow[:, outside] == 255).all()  # white = no offset, outside every crop


# --------------------------------------------------------------------------------------------- batch mode
def test_folder_fill_fills_matched_pairs_and_names_and_counts_the_rest(generator, fill_folders, caplog):
    images, masks, out = fill_folders
    with caplog.at_level(logging.WARNING):
        result = fill_folder(generator, images, masks, out, progress=False)
    assert result.filled == [out / "a.png", out / "b.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert [(name, kind) for name, kind, _ in result.skipped] == [("c.png", "no_mask"), ("d.png", "size"),
                                                                 ("e.png", "bad_mask")]
    assert result.summary() == ("filled 2, skipped 3 (1 without a mask, 1 with a mask of another size, "
                                "1 with an unusable mask)")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("c.png" in w and "no mask named 'c.*'" in w for w in warnings)
    assert any("d.png" in w and "mask 'd.png' is 24x30 but the image is 30x24" in w for w in warnings)
    assert any("e.png" in w and "no hole pixels" in w for w in warnings)
    original, filled = np.asarray(Image.open(images / "a.png")), np.asarray(Image.open(out / "a.png"))
    hole = np.asarray(Image.open(masks / "a.png")) > 127
    assert np.array_equal(filled[~hole], original[~hole])


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_folder_fill_never_leaves_partial_files(generator, fill_folders, monkeypatch, failure):
    images, masks, out = fill_folders
    save = Image.Image.save
    calls = []

    def failing_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:  # the second output: some bytes reach the disk (its open temp file), then it fails
            fp.write(b"\x89PNG partial")
            raise failure
        return save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(PixelSSLError if isinstance(failure, OSError) else KeyboardInterrupt):
        fill_folder(generator, images, masks, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # no b.png, no temporary file
    monkeypatch.setattr(Image.Image, "save", save)
    assert np.asarray(Image.open(out / "a.png")).shape == (29, 37, 3)


def test_folder_fill_refuses_to_write_into_its_inputs(generator, fill_folders):
    images, masks, _ = fill_folders
    with pytest.raises(PixelSSLError, match="must differ"):
        fill_folder(generator, images, masks, images, progress=False)
