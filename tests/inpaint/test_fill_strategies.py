"""Filling large images hole by hole on crops, and folders of images: known pixels kept bit for bit, crops chosen
as specified, batch mode naming and counting what it skips, no partial output files.

A randomly initialised generator stands in for trained weights: the contracts hold whatever it paints.
"""

import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image

import pixelssl.inpaint.fill as fill_module
from pixelssl.cli import main
from pixelssl.errors import PixelSSLError
from pixelssl.inpaint import fill_folder, fill_image
from pixelssl.inpaint.fill import Region, fill_images, fill_regions, resolve_strategy


def _image(height, width, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8))


def _hole(height, width, *boxes):
    hole = torch.zeros(height, width, dtype=torch.bool)
    for top, left, h, w in boxes:
        hole[top:top + h, left:left + w] = True
    return hole


# ---------------------------------------------------------------------------------------------- the crops
def test_a_crop_is_the_hole_box_plus_half_its_longer_side():
    assert fill_regions(_hole(1000, 1000, (300, 400, 256, 100))) == [Region(172, 272, 684, 628)]  # margin 128
    assert fill_regions(_hole(1000, 1000, (10, 500, 20, 40))) == [Region(0, 468, 62, 572)]  # >= 32, clipped


def test_nearby_holes_share_one_crop_and_distant_holes_get_their_own():
    hole = _hole(1000, 1000, (100, 100, 40, 40), (100, 170, 40, 40), (700, 700, 40, 40))
    regions = sorted(fill_regions(hole), key=lambda r: r.top)
    # The first two crops overlap: one crop around their union (100..140 x 100..210, longer side 110 -> margin 55).
    assert regions == [Region(45, 45, 195, 265), Region(668, 668, 772, 772)]


def test_merging_repeats_until_no_crops_overlap():
    # Crops (columns): a 68..152 and b 128..212 overlap; c 216..300 overlaps neither, but the crop of a + b's union
    # (100..180, margin 40: 60..220) reaches it, so all three end in one crop around 100..268 (margin 84).
    hole = _hole(600, 2000, (300, 100, 20, 20), (300, 160, 20, 20), (300, 248, 20, 20))
    assert fill_regions(hole) == [Region(216, 16, 404, 352)]


def test_auto_is_crop_for_images_larger_than_the_working_size():
    assert resolve_strategy("auto", 600, 400) == "crop"
    assert resolve_strategy("auto", 512, 300) == "whole"
    assert resolve_strategy("whole", 4096, 3072) == "whole"
    with pytest.raises(PixelSSLError, match="unknown fill strategy"):
        resolve_strategy("tiles", 10, 10)


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
def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def _mask(height, width, box=(8, 10, 12, 15)):
    mask = np.zeros((height, width), np.uint8)
    mask[box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = 255
    return mask


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    picture = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    _png(images / "a.png", picture(29, 37))
    _png(masks / "a.png", _mask(29, 37))
    Image.fromarray(picture(32, 40)).save(images / "b.jpg", quality=95)
    _png(masks / "b.png", _mask(32, 40))
    _png(images / "c.png", picture(24, 24))  # no mask
    _png(images / "d.png", picture(24, 30))
    _png(masks / "d.png", _mask(30, 24))  # width and height swapped
    _png(images / "e.png", picture(24, 24))
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks / "e.jpg")  # no hole pixels
    (images / "notes.txt").write_text("not an image")
    return images, masks, tmp_path / "out"


def test_folder_fill_fills_matched_pairs_and_names_and_counts_the_rest(generator, folders, caplog):
    images, masks, out = folders
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
    hole = _mask(29, 37) > 0
    assert np.array_equal(filled[~hole], original[~hole])


def test_cli_fills_a_folder_and_prints_the_count(weights, folders, capsys):
    images, masks, out = folders
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


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_folder_fill_never_leaves_partial_files(generator, folders, monkeypatch, failure):
    images, masks, out = folders
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


def test_folder_fill_refuses_to_write_into_its_inputs(generator, folders):
    images, masks, _ = folders
    with pytest.raises(PixelSSLError, match="must differ"):
        fill_folder(generator, images, masks, images, progress=False)
