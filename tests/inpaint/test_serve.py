"""``pixelssl inpaint serve``: the fill API (in-process client), its limits and errors, and the page in Chromium.

A randomly initialised generator stands in for trained weights: its fill is meaningless, but the contract still
holds because the fill composites (known pixels kept, hole pixels replaced).
"""

import base64
import io
import shutil
import socket
import sys
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

from pixelssl.cli import main
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


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_refuses_missing_or_corrupt_weights_in_one_line_before_serving(tmp_path, capsys):
    code = main(["inpaint", "serve", "--weights", str(tmp_path / "none.safetensors"), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "does not exist" in err[0]
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code = main(["inpaint", "serve", "--weights", str(corrupt), "--port", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cannot read weights" in err[0]


def test_cli_names_the_pip_command_when_the_web_extras_are_missing(weights, monkeypatch, capsys):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda *args, **kwargs: pytest.fail("the server started"))
    monkeypatch.delitem(sys.modules, "pixelssl.inpaint.serve")
    for name in [n for n in sys.modules if n == "starlette" or n.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import starlette...` now fails as if it were not installed
    code = main(["inpaint", "serve", "--weights", str(weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "pip install 'pixelssl[serve]'" in err[0] and "starlette" in err[0]


def test_cli_reports_a_port_in_use_in_one_line(weights, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        code = main(["inpaint", "serve", "--weights", str(weights), "--port", str(busy.getsockname()[1])])
    finally:
        busy.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cannot listen on 127.0.0.1:" in err[0]


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


@pytest.fixture
def page_url(generator):
    """The app served by uvicorn on a free local port in a thread."""
    import uvicorn

    sock = open_socket("127.0.0.1", 0)
    app = create_app(Inpainter(generator, ServeLimits(max_side=128), weights_name="generator.safetensors"))
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


def _wait_for_status(driver, kinds=("ok", "error"), contains: str = "", timeout: float = 60) -> tuple[str, str]:
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        status = d.find_element("id", "status")
        kind, text = status.get_attribute("class"), status.text
        return (kind, text) if kind in kinds and contains in text else False

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
    _wait_for_status(browser, kinds=("",), contains="Choose an image")
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
    _wait_for_status(browser, kinds=("",), contains="Choose an image")
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

