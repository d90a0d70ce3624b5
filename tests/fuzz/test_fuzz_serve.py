"""Fuzzed requests to the inpainting server (``pixelssl inpaint serve``): multipart uploads of any image and mask
file, missing / extra / renamed fields, odd file names and content types, oversized files, and raw bodies (damaged
multipart, wrong or missing content types, chunked).

A case passes when ``POST /api/fill`` (or ``/api/fill.png``) answers 200 with the filled image of the upload's size,
or 400 / 413 with a one-line JSON ``{"error": ...}``; never a 500 (Starlette's test client re-raises the server's
exception) and never a hang.
"""

from __future__ import annotations

import base64
import io

import pytest
import torch
from fuzz_support import check_message, fuzz, image_files, mask_files, time_limit
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("starlette", reason="web extras not installed (pip install -e '.[serve]')")
pytest.importorskip("python_multipart", reason="web extras not installed (pip install -e '.[serve]')")
try:
    from starlette.testclient import TestClient
except RuntimeError:  # raised (not ImportError) when neither httpx2 nor httpx is installed
    pytest.skip("Starlette's TestClient needs httpx2 (pip install -e '.[dev]')", allow_module_level=True)

from pixelssl.config import load_config
from pixelssl.inpaint.config import InpaintConfig
from pixelssl.inpaint.serve import Inpainter, ServeLimits, create_app
from pixelssl.inpaint.train import build_generator

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

LIMITS = ServeLimits(max_upload_mib=0.05, max_side=1024)  # small limits: the 413 paths are cheap to reach
NAMES = ("in.png", "in.png", "photo.JPG", "", "../../etc/passwd", "a\nb.png", "é" * 300, "x.png\r\nX-Evil: 1", "\x00.png")
TYPES = ("image/png", "image/png", "image/jpeg", "application/octet-stream", "text/plain", "", "image/png; q=\"x")


@pytest.fixture(scope="module")
def client():
    cfg = load_config(InpaintConfig, overrides=["model.cnum=8"])
    torch.manual_seed(0)
    inpainter = Inpainter(build_generator(cfg.model), LIMITS, weights_name="generator.safetensors")
    with TestClient(create_app(inpainter)) as test_client:
        yield test_client


def _check_answer(response, route: str, size: tuple[int, int] | None) -> None:
    """200 with the filled image, or 400 / 413 with one line of JSON."""
    assert response.status_code in (200, 400, 413), (response.status_code, response.text[:300])
    event(f"status {response.status_code}")
    if response.status_code != 200:
        error = response.json()["error"]
        check_message(error)
        event(f"{response.status_code}: " + " ".join(w for w in error.split()[:3] if "'" not in w))
        return
    png = response.content if route == "/api/fill.png" else base64.b64decode(response.json()["result"].split(",", 1)[1])
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and (size is None or image.size == size)


@st.composite
def multipart_requests(draw):
    image = draw(image_files(max_side=40, damaged=draw(st.sampled_from([False, False, True]))))
    mask = draw(mask_files(image.width, image.height, damaged=draw(st.sampled_from([False, False, True]))))
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    data: dict[str, str] = {}
    for field, upload in (("image", image), ("mask", mask)):
        how = draw(st.sampled_from(["file"] * 40 + ["missing", "text", "renamed", "oversized", "twice"]))
        name, kind = draw(st.sampled_from(NAMES)), draw(st.sampled_from(TYPES))
        content = upload.data
        if how == "missing":
            continue
        if how == "text":
            data[field] = content[:40].decode("latin-1")
            continue
        if how == "oversized":
            content += bytes(LIMITS.max_upload_bytes + 1)
        files.append(("picture" if how == "renamed" else field, (name, content, kind)))
        if how == "twice":
            files.append((field, (name, content, kind)))
    strategy = draw(st.sampled_from([None] * 12 + ["auto", "crop", "whole", "", " crop ", "bogus", "x" * 300, "file"]))
    if strategy == "file":
        files.append(("strategy", ("s.txt", b"crop", "text/plain")))
    elif strategy is not None:
        data["strategy"] = strategy
    for k in range(draw(st.sampled_from([0] * 8 + [1, 4]))):
        data[f"extra{k}"] = "x"
    size = (image.width, image.height) if image.intact else None
    return files, data, size


@fuzz("serve", "multipart")
@given(request=multipart_requests(), route=st.sampled_from(["/api/fill", "/api/fill", "/api/fill.png"]))
def test_multipart_uploads_are_filled_or_refused_in_one_line(client, request, route):
    files, data, size = request
    with time_limit():
        response = client.post(route, files=files or None, data=data or None)
    _check_answer(response, route, size)


def _multipart(parts: list[tuple[str, str, bytes]], boundary: str) -> bytes:
    body = b""
    for field, filename, content in parts:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
                 "Content-Type: image/png\r\n\r\n").encode("latin-1") + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


@st.composite
def raw_requests(draw):
    """(body, headers, chunked): a real upload damaged, or bytes, under a right, wrong or missing content type."""
    image = draw(image_files(max_side=24, damaged=False))
    mask = draw(mask_files(image.width, image.height, damaged=False))
    boundary = draw(st.sampled_from(["fuzzboundary", "x" * 70, "a b", "=", "--"]))
    body = _multipart([("image", "in.png", image.data), ("mask", "mask.png", mask.data)], boundary)
    kind = draw(st.sampled_from(["intact", "truncated", "flipped", "junk", "random", "empty"]))
    if kind == "truncated":
        body = body[: draw(st.integers(0, len(body)))]
    elif kind == "flipped":
        body = bytearray(body)
        for _ in range(draw(st.integers(1, 8))):
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        body = bytes(body)
    elif kind == "junk":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\r\n", b"--", b"\r\n\r\n", b"\x00" * 10, b"\"; name=\"x"])) + body[at:]
    elif kind == "random":
        body = draw(st.binary(max_size=400))
    elif kind == "empty":
        body = b""
    content_type = draw(st.sampled_from([
        f"multipart/form-data; boundary={boundary}"] * 6 + [
        "multipart/form-data", "multipart/form-data; boundary=other", f'multipart/form-data; boundary="{boundary}"',
        "application/x-www-form-urlencoded", "application/json", "text/plain", "", None,
        "multipart/form-data; boundary=" + "y" * 2000, "multipart/mixed; boundary=fuzzboundary"]))
    headers = {} if content_type is None else {"content-type": content_type}
    if draw(st.sampled_from([False] * 5 + [True])):
        headers["content-length"] = draw(st.sampled_from(["0", "1", str(10**12), "-5", "abc"]))
    chunked = draw(st.sampled_from([False] * 4 + [True]))
    event(f"body {kind}")
    return body, headers, chunked


@fuzz("serve", "raw")
@given(request=raw_requests(), route=st.sampled_from(["/api/fill", "/api/fill.png"]))
def test_raw_bodies_are_refused_in_one_line_or_filled(client, request, route):
    body, headers, chunked = request
    with time_limit():
        try:
            response = client.post(route, content=iter([body]) if chunked else body, headers=headers)
        except Exception as exc:  # only the client itself may refuse to send a self-contradictory request
            if "content-length" in headers and type(exc).__module__.split(".")[0] in ("httpx", "h11", "httpx2"):
                event(f"client refused: {type(exc).__name__}")
                return
            raise
    _check_answer(response, route, None)
