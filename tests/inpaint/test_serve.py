"""``pixelssl inpaint serve``: the fill API (in-process client), its limits and errors, and the page in Chromium.

A randomly initialised generator stands in for trained weights: its fill is meaningless, but the contract still
holds because the fill composites (known pixels kept, hole pixels replaced).
"""

import base64
import io
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="web extras not installed (pip install -e '.[serve]')")
pytest.importorskip("python_multipart", reason="web extras not installed (pip install -e '.[serve]')")
try:
    from starlette.testclient import TestClient
except RuntimeError:  # raised (not ImportError) when neither httpx2 nor httpx is installed
    pytest.skip("Starlette's TestClient needs httpx2 (pip install -e '.[dev]')", allow_module_level=True)

from pixelssl.config import load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.contextual_attention import flow_to_image
from pixelssl.inpaint.fill import fill_image
from pixelssl.inpaint.serve import Inpainter, ServeLimits, create_app, flow_legend, open_socket, serve
from pixelssl.inpaint.train import build_generator

HEIGHT, WIDTH = 40, 56


def _client(generator, **limits) -> TestClient:
    return TestClient(create_app(Inpainter(generator, ServeLimits(**limits), weights_name="generator.safetensors")))


@pytest.fixture(scope="module")
def client(generator):
    return _client(generator)


def _picture(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A smooth colour picture (no noise: its PNG is small and a filled pixel equals it only by accident)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 3 % 256],
                    axis=-1).astype(np.uint8)


def _hole(height: int = HEIGHT, width: int = WIDTH, box=(10, 28, 12, 40)) -> np.ndarray:
    hole = np.zeros((height, width), bool)
    hole[box[0]:box[1], box[2]:box[3]] = True
    return hole


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_png(hole: np.ndarray) -> bytes:
    return _png(hole.astype(np.uint8) * 255)


def _decode(url_or_bytes) -> np.ndarray:
    data = url_or_bytes
    if isinstance(data, str):
        assert data.startswith("data:image/png;base64,")
        data = base64.b64decode(data.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _files(image: bytes, mask: bytes, image_name: str = "in.png", mask_name: str = "mask.png") -> dict:
    return {"image": (image_name, image, "image/png"), "mask": (mask_name, mask, "image/png")}


def _assert_filled(result: np.ndarray, picture: np.ndarray, hole: np.ndarray) -> None:
    assert result.shape == picture.shape
    assert np.array_equal(result[~hole], picture[~hole]), "known pixels changed"
    changed = (result[hole] != picture[hole]).any(axis=-1)
    assert changed.mean() > 0.99, f"only {changed.mean():.1%} of the hole pixels changed"


# ------------------------------------------------------------------------------------------------- fill API
def test_fill_returns_the_library_fill_with_known_pixels_kept_and_the_flow(client, generator):
    picture, hole = _picture(), _hole()
    response = client.post("/api/fill", files=_files(_png(picture), _mask_png(hole)))
    assert response.status_code == 200, response.text
    answer = response.json()
    result = _decode(answer["result"])
    _assert_filled(result, picture, hole)
    expected, expected_flow = fill_image(generator, torch.from_numpy(picture).permute(2, 0, 1),
                                         torch.from_numpy(hole), return_flow=True)
    assert np.array_equal(result, expected.permute(1, 2, 0).numpy())  # the PNG round trip is exact
    assert np.array_equal(_decode(answer["flow"]), expected_flow.permute(1, 2, 0).numpy())
    assert (answer["width"], answer["height"], answer["hole_pixels"]) == (WIDTH, HEIGHT, int(hole.sum()))
    assert answer["seconds"] >= 0


def test_png_route_answers_the_completed_image_itself(client):
    picture, hole = _picture(), _hole(box=(0, 9, 0, 56))  # a hole touching the border
    response = client.post("/api/fill.png", files=_files(_png(picture), _mask_png(hole)))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    _assert_filled(_decode(response.content), picture, hole)


def test_odd_sized_jpeg_and_greyscale_mask_are_accepted(client):
    picture, hole = _picture(37, 29), _hole(37, 29, box=(5, 20, 3, 17))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=95)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    grey_mask = _png(np.where(hole, 200, 30).astype(np.uint8))  # > mid-grey = hole
    response = client.post("/api/fill", files=_files(buffer.getvalue(), grey_mask, "photo.jpg"))
    assert response.status_code == 200, response.text
    _assert_filled(_decode(response.json()["result"]), decoded, hole)


def test_a_generator_without_contextual_attention_answers_no_flow():
    cfg = load_config(InpaintConfig, overrides=["model.cnum=8", "model.contextual_attention=false"])
    client = _client(build_generator(cfg.model))
    picture, hole = _picture(), _hole()
    answer = client.post("/api/fill", files=_files(_png(picture), _mask_png(hole))).json()
    assert answer["flow"] is None
    _assert_filled(_decode(answer["result"]), picture, hole)


def test_fills_run_one_at_a_time(generator):
    """The generator is shared: concurrent requests must not run it concurrently."""
    inpainter = Inpainter(generator)
    active, most = 0, 0
    count_lock = threading.Lock()
    forward = generator.forward

    def counting_forward(*args, **kwargs):
        nonlocal active, most
        with count_lock:
            active += 1
            most = max(most, active)
        time.sleep(0.05)  # widen the window in which an unserialised second fill would overlap
        try:
            return forward(*args, **kwargs)
        finally:
            with count_lock:
                active -= 1

    generator.forward = counting_forward
    results = []
    image, mask = _png(_picture(16, 16)), _mask_png(_hole(16, 16, box=(4, 12, 4, 12)))
    try:
        threads = [threading.Thread(target=lambda: results.append(inpainter.fill(image, "a.png", mask, "m.png")))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        del generator.forward
    assert len(results) == 3 and most == 1


# ------------------------------------------------------------------------------------------------- strategy
def _library_fill(generator, picture: np.ndarray, hole: np.ndarray, strategy: str) -> np.ndarray:
    filled, _ = fill_image(generator, torch.from_numpy(picture).permute(2, 0, 1), torch.from_numpy(hole),
                           strategy=strategy)
    return filled.permute(1, 2, 0).numpy()


def test_the_strategy_field_chooses_the_fill_and_auto_is_crop_for_large_images(client, generator):
    """What the page sends: no field or 'auto' resolves by size (over 512 px: crop); 'crop' and 'whole' are obeyed."""
    picture, hole = _picture(48, 600), _hole(48, 600, box=(12, 36, 280, 320))  # longer side 600 > 512
    files = _files(_png(picture), _mask_png(hole))
    answers = {field: client.post("/api/fill", files=files, data={} if field is None else {"strategy": field})
               for field in (None, "auto", "crop", "whole", " crop ")}
    for field, response in answers.items():
        assert response.status_code == 200, (field, response.text)
    used = {field: response.json()["strategy"] for field, response in answers.items()}
    assert used == {None: "crop", "auto": "crop", "crop": "crop", "whole": "whole", " crop ": "crop"}
    crop, whole = (_decode(answers[s].json()["result"]) for s in ("crop", "whole"))
    assert np.array_equal(crop, _library_fill(generator, picture, hole, "crop"))
    assert np.array_equal(whole, _library_fill(generator, picture, hole, "whole"))
    assert not np.array_equal(crop, whole)  # the crop (hole box + margin) does not cover the image: other context
    assert np.array_equal(_decode(answers[None].json()["result"]), crop)
    for result in (crop, whole):
        _assert_filled(result, picture, hole)
    # the PNG route takes the field too
    png = client.post("/api/fill.png", files=files, data={"strategy": "whole"})
    assert np.array_equal(_decode(png.content), whole)


def test_auto_is_whole_for_small_images_and_crop_can_be_forced(client, generator):
    picture, hole = _picture(), _hole()
    files = _files(_png(picture), _mask_png(hole))
    assert client.post("/api/fill", files=files).json()["strategy"] == "whole"
    forced = client.post("/api/fill", files=files, data={"strategy": "crop"}).json()
    assert forced["strategy"] == "crop"
    assert np.array_equal(_decode(forced["result"]), _library_fill(generator, picture, hole, "crop"))


def test_a_bad_strategy_is_a_400_naming_the_choices(client):
    files = _files(_png(_picture()), _mask_png(_hole()))
    error = _error(client.post("/api/fill", files=files, data={"strategy": "tiles"}), 400)
    assert error == "unknown strategy 'tiles'; use one of auto | crop | whole"
    error = _error(client.post("/api/fill", files=files, data={"strategy": "crop\nwhole" + "x" * 100}), 400)
    assert error.startswith("unknown strategy 'crop wholexxx") and len(error) < 100
    as_file = {**files, "strategy": ("s.txt", b"crop", "text/plain")}
    assert "Maximum number of files is 2" in _error(client.post("/api/fill", files=as_file), 400)  # a third file


def test_info_offers_the_strategies_and_the_working_size(client):
    assert client.get("/api/info").json()["fill"] == {"strategies": ["auto", "crop", "whole"],
                                                      "default_strategy": "auto", "working_size": 512}


# ------------------------------------------------------------------------------------------ limits and errors
def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"]
    return body["error"]


@pytest.mark.parametrize("image,mask,message", [
    (_png(_picture()), _mask_png(_hole(HEIGHT, WIDTH - 1)), "mask 'mask.png' is 55x40 but image 'in.png' is 56x40"),
    (_png(_picture()), _mask_png(np.zeros((HEIGHT, WIDTH), bool)), "mask 'mask.png' has no hole pixels"),
    (_png(_picture()), _mask_png(np.ones((HEIGHT, WIDTH), bool)), "marks the whole image as hole"),
    (b"this is not an image", _mask_png(_hole()), "cannot read image 'in.png': not a recognised image"),
    (_png(_picture()), b"GIF89a broken", "cannot read mask 'mask.png'"),
    (b"", _mask_png(_hole()), "image 'in.png' is empty"),
    (_png(_picture())[:60], _mask_png(_hole()), "cannot read image 'in.png'"),  # truncated after the header
])
def test_bad_inputs_get_a_400_naming_the_file(client, image, mask, message):
    assert message in _error(client.post("/api/fill", files=_files(image, mask)), 400)


def test_a_missing_file_field_is_named(client):
    response = client.post("/api/fill", files={"image": ("in.png", _png(_picture()), "image/png")})
    assert "no 'mask' file" in _error(response, 400)
    assert "no 'image' file" in _error(client.post("/api/fill", data={"x": "1"}), 400)


def test_files_over_the_upload_limit_get_a_413(generator):
    client = _client(generator, max_upload_mib=0.002)  # 2 KiB: the picture's PNG is larger
    noisy = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    error = _error(client.post("/api/fill", files=_files(_png(noisy), _mask_png(_hole()))), 413)
    assert error.startswith("image 'in.png' is") and "at most 0.002 MiB per file" in error


def test_a_body_over_the_request_cap_is_refused_before_it_is_read(generator):
    client = _client(generator, max_upload_mib=0.01)  # cap = 2 x 10 KiB + 64 KiB
    huge = b"\0" * (200 * 1024)
    error = _error(client.post("/api/fill", files=_files(huge, _mask_png(_hole()))), 413)
    assert "the upload is larger than" in error and "at most 0.01 MiB per file" in error


def test_a_chunked_body_over_the_request_cap_is_cut_off_while_it_streams(generator):
    client = _client(generator, max_upload_mib=0.01)

    def body():  # a generator body is sent chunked, without Content-Length
        yield b'--xx\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        yield from (b"\0" * 4096 for _ in range(50))
        yield b"\r\n--xx--\r\n"

    response = client.post("/api/fill", content=body(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "the upload is larger than" in _error(response, 413)


def test_a_body_that_is_not_multipart_is_a_400(client):
    response = client.post("/api/fill", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"})
    assert "not a valid upload" in _error(response, 400)


def test_images_over_the_side_limit_get_a_413(generator):
    client = _client(generator, max_side=48)
    error = _error(client.post("/api/fill", files=_files(_png(_picture()), _mask_png(_hole()))), 413)
    assert "image 'in.png' is 56x40 px; the server accepts at most 48 px per side" in error


def test_default_limits_accept_4096_px_per_side(generator):
    assert ServeLimits().max_side == 4096
    client = _client(generator)  # the defaults
    picture, hole = _picture(16, 4096), _hole(16, 4096, box=(4, 12, 2000, 2040))
    response = client.post("/api/fill", files=_files(_png(picture), _mask_png(hole)))
    assert response.status_code == 200, response.text
    _assert_filled(_decode(response.json()["result"]), picture, hole)


def test_info_reports_the_model_and_the_limits(generator):
    info = _client(generator, max_upload_mib=3, max_side=512).get("/api/info").json()
    assert info["limits"] == {"max_upload_mib": 3, "max_side": 512, "max_upload_bytes": 3 * 1024 * 1024}
    assert info["model"]["cnum"] == 8 and info["model"]["contextual_attention"] is True
    assert info["model"]["parameters"] == sum(p.numel() for p in generator.parameters())


def test_the_page_and_its_script_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ('id="image-canvas"', 'id="mask-canvas"', 'id="fill"', 'id="flow"', 'id="download"'):
        assert element in page.text
    assert "/api/fill" in client.get("/static/page.js").text


def test_flow_legend_is_the_flow_colouring_of_offsets_from_its_centre(client):
    legend = flow_legend(33)  # radius 16
    assert legend.shape == (3, 33, 33) and legend.dtype == torch.uint8
    assert (legend[:, 16, 16] == 255).all() and (legend[:, 0, 0] == 255).all()  # centre and outside: white
    # the colour at (row, col) is that of the offset (row - 16, col - 16) in a picture whose longest offset is 16
    offsets = torch.tensor([[0.0, 16.0], [9.0, -5.0]]).T.reshape(1, 2, 2, 1)  # two pixels' (row, col) offsets
    expected = (flow_to_image(offsets)[0, :, :, 0] * 255).round().to(torch.uint8)  # (3, 2)
    assert torch.equal(legend[:, 16, 32], expected[:, 0])
    assert torch.equal(legend[:, 25, 11], expected[:, 1])
    # along a ray the colour moves away from white as the offset grows
    whiteness = [int(legend[:, 16, 16 + r].sum()) for r in range(0, 17, 4)]
    assert whiteness == sorted(whiteness, reverse=True) and whiteness[0] > whiteness[-1]
    served = _decode(client.get("/api/flow-legend.png").content)
    assert served.shape == (129, 129, 3)


# ------------------------------------------------------------------------------------------------- listening
def test_listening_beyond_this_machine_warns(weights, monkeypatch, caplog, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.update(sockets=sockets))
    serve(weights, host="0.0.0.0", port=0)
    (sock,) = served["sockets"]
    host, port = sock.getsockname()
    sock.close()
    assert host == "0.0.0.0" and f"http://0.0.0.0:{port}/" in capsys.readouterr().out
    assert "anyone who can reach this machine" in caplog.text


def test_listening_on_this_machine_does_not_warn(weights, monkeypatch, caplog):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.update(sockets=sockets))
    serve(weights, port=0)
    (sock,) = served["sockets"]
    assert sock.getsockname()[0] == "127.0.0.1"
    sock.close()
    assert "anyone who can reach" not in caplog.text


# --------------------------------------------------------------------------------------------------- browser
def _chromium():
    """(chromium, chromedriver) paths, or skip saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium not installed (pip install -e '.[dev]')")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


def _served(generator, limits: ServeLimits):
    """The app served by uvicorn on a free local port in a thread: yields the page's URL."""
    import uvicorn

    sock = open_socket("127.0.0.1", 0)
    app = create_app(Inpainter(generator, limits, weights_name="generator.safetensors"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def page_url(generator):
    """The page with a 128 px side limit (larger images are downscaled by the page)."""
    yield from _served(generator, ServeLimits(max_side=128))


@pytest.fixture
def default_page_url(generator):
    """The page with the default limits (4096 px per side)."""
    yield from _served(generator, ServeLimits())


@pytest.fixture
def browser(monkeypatch):
    browser_path, driver_path = _chromium()
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager go online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_for_status(driver, kinds=("ok", "error"), contains: str = "", timeout: float = 60,
                     replacing: str | None = None) -> tuple[str, str]:
    """The page's status once it is of one of ``kinds`` and contains ``contains`` (and, with ``replacing``, once
    that earlier status has been replaced: a loaded machine may not have started the next request yet)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        status = d.find_element("id", "status")
        kind, text = status.get_attribute("class"), status.text
        return (kind, text) if kind in kinds and contains in text and text != replacing else False

    return WebDriverWait(driver, timeout).until(done)


def _set_brush(driver, size: int) -> None:
    driver.execute_script("const brush = document.getElementById('brush'); brush.value = arguments[0];"
                          "brush.dispatchEvent(new Event('input'));", size)
    assert driver.find_element("id", "brush-size").text == str(size)


def _page_png(driver, expression: str) -> np.ndarray:
    """Decode a PNG the page holds: ``expression`` is JS evaluating to a data URL or to a Promise of a Blob."""
    url = driver.execute_async_script(f"""
        const done = arguments[arguments.length - 1];
        Promise.resolve({expression}).then((value) => {{
          if (typeof value === "string") return done(value);
          const reader = new FileReader();
          reader.onload = () => done(reader.result);
          reader.readAsDataURL(value);
        }});""")
    return _decode(url)


def test_page_fills_a_painted_hole_and_an_uploaded_mask_in_chromium(page_url, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    picture = _picture(64, 96)
    (tmp_path / "scene.png").write_bytes(_png(picture))
    upload_hole = _hole(64, 96, box=(30, 50, 60, 90))
    (tmp_path / "mask.png").write_bytes(_mask_png(upload_hole))

    browser.get(page_url)
    _wait_for_status(browser, kinds=("",), contains="Choose, drop or paste an image")
    assert "Model generator.safetensors" in browser.find_element("id", "model-info").text
    browser.find_element("id", "image-input").send_keys(str(tmp_path / "scene.png"))
    _wait_for_status(browser, kinds=("",), contains="Loaded 'scene.png' (96x64 px)")

    # paint a stroke with the mouse: the 96 px image is shown 384 px wide, so screen px / 4 = image px
    canvas = browser.find_element("id", "mask-canvas")
    assert canvas.size == {"width": 384, "height": 256}
    _set_brush(browser, 16)
    ActionChains(browser).move_to_element_with_offset(canvas, -100, -40).click_and_hold() \
        .move_by_offset(100, 20).move_by_offset(100, -20).release().perform()
    painted = _page_png(browser, "maskBlob().then((mask) => mask.blob)")[..., 0] > 127
    rows, cols = np.nonzero(painted)
    # a 4 px wide stroke through image (x, y) = (23, 22), (48, 27), (73, 22) with round caps, and nothing else
    assert 150 < painted.sum() < 350, f"{painted.sum()} painted pixels"
    assert (cols.min(), rows.min()) in {(x, y) for x in range(20, 23) for y in range(19, 22)}
    assert 73 <= cols.max() <= 76 and 27 <= rows.max() <= 30
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    browser.save_screenshot(str(tmp_path / "painted_fill.png"))
    assert kind == "ok", text
    assert f"Filled {painted.sum()} hole pixels of 96x64 px" in text
    _assert_filled(_page_png(browser, "document.getElementById('result').src"), picture, painted)
    assert browser.execute_script("const f = document.getElementById('flow'); return f.complete && f.naturalWidth") == 96
    assert browser.execute_script("return document.getElementById('legend').naturalWidth") == 129
    assert browser.find_element("id", "download").get_attribute("download") == "scene_filled.png"

    # an uploaded mask replaces the painted one
    browser.find_element("id", "mask-input").send_keys(str(tmp_path / "mask.png"))
    _wait_for_status(browser, kinds=("",), contains=f"Loaded mask 'mask.png' ({upload_hole.sum()} hole pixels)")
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    browser.save_screenshot(str(tmp_path / "uploaded_mask_fill.png"))
    assert kind == "ok", text
    _assert_filled(_page_png(browser, "document.getElementById('result').src"), picture, upload_hole)

    # an empty mask is caught by the page; a mask over everything by the server, whose one-line error is shown
    browser.find_element("id", "clear-mask").click()
    browser.find_element("id", "fill").click()
    assert "The mask is empty" in _wait_for_status(browser, kinds=("error",))[1]
    (tmp_path / "white.png").write_bytes(_mask_png(np.ones((64, 96), bool)))
    browser.find_element("id", "mask-input").send_keys(str(tmp_path / "white.png"))
    _wait_for_status(browser, kinds=("",), contains="Loaded mask 'white.png'")
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser, kinds=("error",), contains="whole image")
    browser.save_screenshot(str(tmp_path / "all_hole_error.png"))
    assert text == "mask 'painted-mask.png' marks the whole image as hole; nothing is left to fill from"


def test_page_downscales_images_over_the_side_limit(page_url, browser, tmp_path):
    (tmp_path / "big.png").write_bytes(_png(_picture(100, 160)))  # the server takes at most 128 px per side
    browser.get(page_url)
    _wait_for_status(browser, kinds=("",), contains="Choose, drop or paste an image")
    browser.find_element("id", "image-input").send_keys(str(tmp_path / "big.png"))
    _wait_for_status(browser, kinds=("",), contains="Downscaled 'big.png' from 160x100 to 128x80 px")
    browser.find_element("id", "mask-input").send_keys(str(tmp_path / "big.png"))  # bright half = hole, resized
    _wait_for_status(browser, kinds=("",), contains="resized from 160x100 to 128x80")
    sent = _page_png(browser, "state.imageBlob")
    hole = _page_png(browser, "maskBlob().then((mask) => mask.blob)")[..., 0] > 127
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    browser.save_screenshot(str(tmp_path / "downscaled_fill.png"))
    assert kind == "ok", text
    _assert_filled(_page_png(browser, "document.getElementById('result').src"), sent, hole)



# ------------------------------------------------------------------------- browser: undo, compare, drop, keys
def _open(driver, url: str, tmp_path, picture: np.ndarray, name: str = "scene.png") -> None:
    """Open the page and load ``picture`` through the image field."""
    (tmp_path / name).write_bytes(_png(picture))
    driver.get(url)
    _wait_for_status(driver, kinds=("",), contains="Choose, drop or paste an image")
    driver.find_element("id", "image-input").send_keys(str(tmp_path / name))
    height, width = picture.shape[:2]
    _wait_for_status(driver, kinds=("",), contains=f"Loaded '{name}' ({width}x{height} px)")


def _stroke(driver, *moves: tuple[int, int]) -> None:
    """Drag the mouse over the mask canvas: from ``moves[0]`` (screen px from its centre) by each further move."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver).move_to_element_with_offset(driver.find_element("id", "mask-canvas"), *moves[0])
    chain.click_and_hold()
    for move in moves[1:]:
        chain.move_by_offset(*move)
    chain.release().perform()


def _mask_alpha(driver) -> np.ndarray:
    """The mask canvas's alpha channel as drawn (uint8 (H, W)): exact, unlike the thresholded PNG that is sent."""
    url = driver.execute_script("return document.getElementById('mask-canvas').toDataURL()")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))[..., 3]


def _keys(driver, *keys: str, hold: tuple[str, ...] = ()) -> None:
    """Press ``keys`` one after the other while the modifier keys ``hold`` are held."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for modifier in hold:
        chain.key_down(modifier)
    for key in keys:
        chain.send_keys(key)
    for modifier in reversed(hold):
        chain.key_up(modifier)
    chain.perform()


def _disabled(driver, *ids: str) -> list[bool]:
    return [not driver.find_element("id", i).is_enabled() for i in ids]


def test_page_undoes_and_redoes_strokes_uploads_and_clears_in_chromium(page_url, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    picture = _picture(64, 96)
    _open(browser, page_url, tmp_path, picture)
    assert _disabled(browser, "undo", "redo") == [True, True]
    empty = _mask_alpha(browser)
    assert not empty.any()
    _set_brush(browser, 16)
    _stroke(browser, (-120, -40), (100, 20), (100, -20))
    one = _mask_alpha(browser)
    browser.find_element("id", "erase").click()
    _stroke(browser, (-40, -60), (0, 120))  # an erasing stroke across the first
    browser.find_element("id", "erase").click()
    _stroke(browser, (-100, 60), (200, 0))
    three = _mask_alpha(browser)
    erased = (one > 0) & (three == 0)
    assert one.any() and erased.sum() > 20, "the erasing stroke removed nothing"

    # undo with the button twice = the first stroke exactly (strokes are replayed as they were drawn)
    browser.find_element("id", "undo").click()
    browser.find_element("id", "undo").click()
    assert np.array_equal(_mask_alpha(browser), one)
    assert _disabled(browser, "undo", "redo") == [False, False]
    _keys(browser, "z", hold=(Keys.CONTROL,))  # Ctrl+Z: the first stroke too
    assert np.array_equal(_mask_alpha(browser), empty) and _disabled(browser, "undo", "redo") == [True, False]
    _keys(browser, "z", hold=(Keys.CONTROL, Keys.SHIFT))  # Ctrl+Shift+Z
    assert np.array_equal(_mask_alpha(browser), one)
    _keys(browser, "y", "y", hold=(Keys.CONTROL,))  # Ctrl+Y twice: the erasing stroke, then the last
    assert np.array_equal(_mask_alpha(browser), three) and _disabled(browser, "undo", "redo") == [False, True]

    # what is filled is the mask after undo
    browser.find_element("id", "undo").click()
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    two = _mask_alpha(browser) > 127
    assert kind == "ok" and f"Filled {two.sum()} hole pixels" in text, text
    _assert_filled(_page_png(browser, "document.getElementById('result').src"), picture, two)

    # a new stroke after undo drops what was undone
    _stroke(browser, (100, -80), (20, 20))
    assert _disabled(browser, "undo", "redo") == [False, True]
    four = _mask_alpha(browser)

    # a mask upload and a clear are steps too; undoing them repaints the strokes before them
    upload = _hole(64, 96, box=(5, 25, 5, 40))
    (tmp_path / "mask.png").write_bytes(_mask_png(upload))
    browser.find_element("id", "mask-input").send_keys(str(tmp_path / "mask.png"))
    _wait_for_status(browser, kinds=("",), contains="Loaded mask 'mask.png'")
    assert np.array_equal(_mask_alpha(browser) > 0, upload)
    _stroke(browser, (120, 80), (30, 0))
    with_upload = _mask_alpha(browser)
    browser.find_element("id", "clear-mask").click()
    assert not _mask_alpha(browser).any()
    browser.find_element("id", "undo").click()
    assert np.array_equal(_mask_alpha(browser), with_upload)
    browser.find_element("id", "undo").click()
    browser.find_element("id", "undo").click()
    assert np.array_equal(_mask_alpha(browser), four)

    # a new image starts with an empty mask and no history
    (tmp_path / "other.png").write_bytes(_png(picture))
    browser.find_element("id", "image-input").send_keys(str(tmp_path / "other.png"))
    _wait_for_status(browser, kinds=("",), contains="Loaded 'other.png'")
    assert not _mask_alpha(browser).any() and _disabled(browser, "undo", "redo") == [True, True]


def _element_pixels(driver, element_id: str) -> np.ndarray:
    """What the browser shows of one element (RGB, screen px)."""
    shot = driver.find_element("id", element_id).screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))


def _close(shown: np.ndarray, expected: np.ndarray) -> bool:
    return shown.shape == expected.shape and float(np.abs(shown.astype(int) - expected).mean()) < 1.0


def test_page_compares_the_original_with_the_result_in_chromium(page_url, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    picture = _picture(64, 96)
    _open(browser, page_url, tmp_path, picture)
    _set_brush(browser, 40)
    _stroke(browser, (-150, 0), (300, 0))
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    assert kind == "ok", text
    result = _page_png(browser, "document.getElementById('result').src")
    assert np.array_equal(_page_png(browser, "fetch(document.getElementById('original').src).then((r) => r.blob())"),
                          picture)  # the original under the result is the image sent
    # the 96 x 64 images are shown 4x enlarged, pixelated: each image pixel is a 4 x 4 block on screen
    big = {name: np.repeat(np.repeat(image, 4, axis=0), 4, axis=1) for name, image in
           (("original", picture), ("result", result))}
    assert not _close(big["original"], big["result"])
    assert _close(_element_pixels(browser, "compare"), big["result"])  # the slider starts at "result only"

    def slide(value: int) -> np.ndarray:
        browser.execute_script("const s = document.getElementById('compare-slider'); s.value = arguments[0];"
                               "s.dispatchEvent(new Event('input'));", value)
        return _element_pixels(browser, "compare")

    assert _close(slide(100), big["original"])
    half = slide(50)  # left half original, right half result
    assert _close(half[:, :192], big["original"][:, :192]) and _close(half[:, 192:], big["result"][:, 192:])
    slider = browser.find_element("id", "compare-slider")
    assert slider.get_attribute("aria-valuetext") == "original on the left 50%, result on the right"
    assert _close(slide(0), big["result"])

    # the button toggles the original; holding C shows it while held
    button = browser.find_element("id", "show-original")
    button.click()
    assert button.get_attribute("aria-pressed") == "true" and _close(_element_pixels(browser, "compare"),
                                                                     big["original"])
    button.click()
    assert button.get_attribute("aria-pressed") == "false"
    ActionChains(browser).key_down("c").perform()
    assert _close(_element_pixels(browser, "compare"), big["original"])
    ActionChains(browser).key_up("c").perform()
    assert _close(_element_pixels(browser, "compare"), big["result"])
    browser.save_screenshot(str(tmp_path / "compare.png"))


_DISPATCH_FILE = """
    const [type, name, base64, mime, targetId] = arguments;
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, { type: mime }));
    const target = targetId ? document.getElementById(targetId) : document.body;
    const event = type === "paste" ? new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true })
      : new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true });
    target.dispatchEvent(event);
    return [event.defaultPrevented, document.body.classList.contains("dropping")];
"""


def _dispatch_file(driver, event: str, name: str, data: bytes, mime: str = "image/png", target: str = "") -> list:
    """Dispatch a drag event or a paste carrying one file; returns [default prevented, page shows 'dropping']."""
    return driver.execute_script(_DISPATCH_FILE, event, name, base64.b64encode(data).decode(), mime, target)


def _image_canvas(driver) -> np.ndarray:
    url = driver.execute_script("return document.getElementById('image-canvas').toDataURL()")
    return _decode(url)


def test_page_loads_a_dropped_or_pasted_image_in_chromium(page_url, browser, tmp_path):
    browser.get(page_url)
    _wait_for_status(browser, kinds=("",), contains="Choose, drop or paste an image")
    dropped, pasted = _picture(64, 96), _picture(40, 56)[::-1].copy()
    assert _dispatch_file(browser, "dragover", "dropped.png", _png(dropped)) == [True, True]  # drop allowed, shown
    assert _dispatch_file(browser, "drop", "dropped.png", _png(dropped), target="editor") == [True, False]
    _wait_for_status(browser, kinds=("",), contains="Loaded 'dropped.png' (96x64 px)")
    assert np.array_equal(_image_canvas(browser), dropped)
    assert not browser.find_element("id", "fill").get_attribute("disabled")

    assert _dispatch_file(browser, "paste", "image.png", _png(pasted)) == [True, False]
    _wait_for_status(browser, kinds=("",), contains="Loaded 'image.png' (56x40 px)")
    assert np.array_equal(_image_canvas(browser), pasted)
    _stroke(browser, (-60, 0), (120, 0))
    browser.find_element("id", "fill").click()
    kind, text = _wait_for_status(browser)
    assert kind == "ok" and "of 56x40 px" in text, text
    _assert_filled(_page_png(browser, "document.getElementById('result').src"), pasted, _mask_alpha(browser) > 127)

    # a drop onto a file field is left to the field; a file that is not an image is named
    assert _dispatch_file(browser, "drop", "mask.png", _png(dropped), target="mask-input") == [False, False]
    assert _dispatch_file(browser, "drop", "notes.txt", b"just text", "text/plain") == [True, False]
    assert "Cannot read image 'notes.txt'" in _wait_for_status(browser, kinds=("error",))[1]
    assert _dispatch_file(browser, "paste", "notes.txt", b"just text", "text/plain") == [False, False]  # ignored


def test_page_keyboard_shortcuts_in_chromium(page_url, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    _open(browser, page_url, tmp_path, _picture(64, 96))
    size = lambda: int(browser.find_element("id", "brush-size").text)  # noqa: E731
    assert size() == 24
    _keys(browser, "]")
    assert size() == 29 and browser.find_element("id", "brush").get_attribute("value") == "29"
    _keys(browser, "[", "[")
    assert size() == 18
    _keys(browser, *"]" * 20)
    assert size() == 120  # the slider's maximum
    _keys(browser, *"[" * 80)
    assert size() == 2  # and its minimum

    erase = browser.find_element("id", "erase")
    _keys(browser, "e")
    assert erase.is_selected()
    _keys(browser, "E")
    assert not erase.is_selected()

    # ? opens the help, which lists every shortcut; Escape or ? closes it
    help_dialog = browser.find_element("id", "help")
    _keys(browser, "?")
    assert help_dialog.get_attribute("open") is not None
    listed = help_dialog.text
    for shortcut in ("Ctrl + Z", "Ctrl + Shift + Z", "Ctrl + Y", "[ and ]", "E", "F", "C (hold)", "?", "Esc"):
        assert shortcut.replace(" + ", "+") in listed.replace(" + ", "+"), shortcut
    _keys(browser, "f", "e")  # single keys do nothing while the help is open
    _keys(browser, Keys.ESCAPE)
    assert help_dialog.get_attribute("open") is None
    assert browser.find_element("id", "status").text.startswith("Loaded 'scene.png'") and not erase.is_selected()
    browser.find_element("id", "help-button").click()
    assert help_dialog.get_attribute("open") is not None
    _keys(browser, "?")
    assert help_dialog.get_attribute("open") is None

    # F fills (here: the empty-mask refusal, then a real fill); letters typed in the drop-down are its own
    _keys(browser, "f")
    assert "The mask is empty" in _wait_for_status(browser, kinds=("error",))[1]
    _set_brush(browser, 30)
    _stroke(browser, (-100, 0), (200, 0))
    browser.find_element("id", "strategy").send_keys("w")  # typeahead selects "whole"; no shortcut fires
    assert browser.find_element("id", "strategy").get_attribute("value") == "whole"
    assert "The mask is empty" in browser.find_element("id", "status").text
    browser.find_element("id", "brush").click()  # focus away from the drop-down
    refusal = browser.find_element("id", "status").text
    _keys(browser, "f")
    kind, text = _wait_for_status(browser, replacing=refusal)
    assert kind == "ok" and text.endswith("(strategy whole).")
    # every button says its shortcut to assistive technology and in its tooltip
    for button, shortcut in (("undo", "Control+Z"), ("fill", "F"), ("show-original", "C"), ("help-button", "?")):
        assert browser.find_element("id", button).get_attribute("aria-keyshortcuts").startswith(shortcut)


def test_page_sends_the_strategy_and_large_images_default_to_crop_in_chromium(default_page_url, browser,
                                                                              tmp_path, generator):
    picture = _picture(360, 640)  # longer side 640 > the working size 512: auto is crop
    _open(browser, default_page_url, tmp_path, picture, "wide.png")
    hint = browser.find_element("id", "strategy-hint").text
    assert hint.startswith("This 640x360 px image will be filled with crop"), hint
    assert browser.find_element("id", "strategy").get_attribute("value") == "auto"
    browser.execute_script("""window.sent = []; const send = window.fetch;
        window.fetch = (url, init) => { if (init && init.body instanceof FormData) window.sent.push(init.body.get("strategy"));
                                        return send(url, init); };""")
    _set_brush(browser, 30)
    _stroke(browser, (-80, -20), (160, 40))
    hole = _mask_alpha(browser) > 127
    for chosen, used in (("auto", "crop"), ("whole", "whole"), ("crop", "crop")):
        browser.execute_script("const s = document.getElementById('strategy'); s.value = arguments[0];"
                               "s.dispatchEvent(new Event('change'));", chosen)
        if chosen == "whole":
            assert "filled with whole (the whole image at once; slow for an image this large)" in \
                browser.find_element("id", "strategy-hint").text
        browser.find_element("id", "fill").click()
        kind, text = _wait_for_status(browser, contains=f"(strategy {used})")
        assert kind == "ok", text
        result = _page_png(browser, "document.getElementById('result').src")
        assert np.array_equal(result, _library_fill(generator, picture, hole, used)), chosen
        browser.execute_script("document.getElementById('status').className = ''")  # the next wait sees a new answer
    assert browser.execute_script("return window.sent") == ["auto", "whole", "crop"]
