"""``pixelssl inpaint serve``: a local web page that fills holes with a trained generator.

A small Starlette app: ``/`` is one static page (canvas brush with undo/redo, optional mask upload, drop or paste
an image, keyboard shortcuts, result with an original/result comparison, attention flow, download).
``POST /api/fill`` takes multipart ``image`` + ``mask`` files (and an optional ``strategy`` field: auto | crop |
whole, as ``fill_image``'s; default auto) and answers JSON with the completed image and the attention-flow picture
as PNG data URLs and the strategy used (``POST /api/fill.png`` answers the completed PNG itself, for scripts).
Every refusal is a one-line JSON ``{"error": ...}`` with status 413 (over a limit) or 400 (bad input).

The generator is loaded once; fills run one at a time (a lock) in a worker thread under ``torch.inference_mode``,
so the page and other requests stay responsive while a fill computes.

Example::

    app = create_app(Inpainter(load_generator("runs/inpaint_demo/generator.safetensors")))
    # uvicorn.run(app, host="127.0.0.1", port=7860)  -- or `pixelssl inpaint serve --weights W`
"""

from __future__ import annotations

import base64
import io
import logging
import socket
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import python_multipart  # noqa: F401  (Starlette parses uploads with it but imports it only then: fail early)
import torch
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from torch import Tensor

from pixelssl.data.decode import UnreadableImage, read_rgb
from pixelssl.errors import DataError, PixelSSLError
from pixelssl.inpaint.contextual_attention import flow_to_image
from pixelssl.inpaint.fill import PNG_COMPRESS_LEVEL, STRATEGIES, WORKING_SIZE, fill_image, resolve_strategy
from pixelssl.inpaint.masks import load_mask
from pixelssl.inpaint.networks import InpaintGenerator, parameter_count

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MIB = 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ServeLimits:
    """What one fill request may send. Larger images are refused by the server; the page downscales them first."""

    max_upload_mib: float = 32.0  # per uploaded file (image, mask): room for a 4096 px photo as JPEG or typical PNG
    max_side: int = 4096  # longest image side in pixels; large images are filled hole by hole on crops (fill.py)

    def __post_init__(self) -> None:
        if not self.max_upload_mib > 0:
            raise PixelSSLError(f"the upload limit must be positive (got {self.max_upload_mib} MiB)")
        if self.max_side < 8:
            raise PixelSSLError(f"the image side limit must be at least 8 px (got {self.max_side})")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mib * MIB)

    @property
    def max_body_bytes(self) -> int:
        """Cap on a whole request: two files at the limit plus room for the multipart framing."""
        return 2 * self.max_upload_bytes + 64 * 1024


class RequestRefused(PixelSSLError):
    """A fill request the server will not run; ``status`` is the HTTP status (413 over a limit, 400 bad input)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FillResult:
    """A completed fill: PNG bytes of the result and of the flow picture (None without contextual attention)."""

    result_png: bytes
    flow_png: bytes | None
    width: int
    height: int
    hole_pixels: int
    seconds: float
    strategy: str = "whole"  # the one used: crop or whole (auto resolved)


def png_bytes(image: Tensor) -> bytes:
    """A uint8 (3, H, W) tensor encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).numpy())).save(buffer, format="PNG",
                                                                            compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """PNG bytes as a ``data:`` URL, which the page shows and offers for download without a second request."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _header_size(data: bytes, what: str, name: str) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels (guards against decompression bombs)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception as exc:  # PIL raises many types on data that is not an image
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RequestRefused(400, f"cannot read {what} '{name}': not a recognised image ({reason})") from exc


def flow_legend(size: int = 129) -> Tensor:
    """The colour key of the flow picture as uint8 (3, size, size): each point is coloured as an offset from the
    centre to it, so a hole cell whose colour matches the point at angle a copied from a patch in direction a."""
    centre = size // 2
    rows, cols = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    offsets = torch.stack([rows, cols]).float()
    offsets *= (rows**2 + cols**2 <= centre**2).float()  # outside the disc: offset 0, drawn white
    return (flow_to_image(offsets.unsqueeze(0))[0] * 255).round().to(torch.uint8)


class Inpainter:
    """A loaded generator behind a lock: checks one uploaded image + mask against the limits and fills it."""

    def __init__(self, generator: InpaintGenerator, limits: ServeLimits | None = None, weights_name: str = "") -> None:
        self.generator = generator.eval()
        self.limits = limits or ServeLimits()
        self.weights_name = weights_name
        self._lock = threading.Lock()  # one fill at a time: bounded memory, and all cores go to the running fill

    def info(self) -> dict:
        """What the page shows about the model and the limits it must respect."""
        return {
            "weights": self.weights_name,
            "model": {"parameters": parameter_count(self.generator), "cnum": self.generator.cnum,
                      "contextual_attention": self.generator.refine.use_contextual_attention},
            "limits": {**asdict(self.limits), "max_upload_bytes": self.limits.max_upload_bytes},
            "fill": {"strategies": list(STRATEGIES), "default_strategy": "auto", "working_size": WORKING_SIZE},
        }

    def check_upload(self, data: bytes, what: str, name: str) -> tuple[int, int]:
        """Size checks of one uploaded file; returns the image's (width, height) read from its header."""
        if len(data) > self.limits.max_upload_bytes:
            raise RequestRefused(413, f"{what} '{name}' is {len(data) / MIB:.1f} MiB; the server accepts at most "
                                      f"{self.limits.max_upload_mib:g} MiB per file")
        if not data:
            raise RequestRefused(400, f"{what} '{name}' is empty")
        return _header_size(data, what, name)

    def fill(self, image_data: bytes, image_name: str, mask_data: bytes, mask_name: str,
             strategy: str = "auto") -> FillResult:
        """Decode, check and fill; raises ``RequestRefused`` with the user-facing reason for any bad input."""
        if strategy not in STRATEGIES:
            shown = " ".join(strategy.split())[:40]  # one line, short: it is echoed
            raise RequestRefused(400, f"unknown strategy '{shown}'; use one of {' | '.join(STRATEGIES)}")
        width, height = self.check_upload(image_data, "image", image_name)
        side = self.limits.max_side
        if max(width, height) > side:
            raise RequestRefused(413, f"image '{image_name}' is {width}x{height} px; the server accepts at most "
                                      f"{side} px per side (downscale it; the page does so itself)")
        mask_size = self.check_upload(mask_data, "mask", mask_name)
        if mask_size != (width, height):
            raise RequestRefused(400, f"mask '{mask_name}' is {mask_size[0]}x{mask_size[1]} but image '{image_name}'"
                                      f" is {width}x{height} (width x height); they must match")
        try:
            image = read_rgb(io.BytesIO(image_data))
        except UnreadableImage as exc:
            raise RequestRefused(400, f"cannot read image '{image_name}': {exc.reason}") from exc
        try:
            hole = load_mask(io.BytesIO(mask_data), tuple(image.shape[-2:]), image_name, name=mask_name)
        except DataError as exc:
            raise RequestRefused(400, str(exc)) from exc
        used = resolve_strategy(strategy, height, width)
        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            filled, flow = fill_image(self.generator, image, hole, return_flow=True, strategy=used)
            seconds = time.perf_counter() - start
        log.info("filled %s (%dx%d, %d hole pixels, %s) in %.2f s", image_name, width, height, int(hole.sum()), used,
                 seconds)
        return FillResult(png_bytes(filled), None if flow is None else png_bytes(flow), width, height,
                          int(hole.sum()), seconds, used)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (413) before they are spooled to disk."""

    def __init__(self, app: ASGIApp, limits: ServeLimits) -> None:
        self.app, self.max_bytes = app, limits.max_body_bytes
        self.message = (f"the upload is larger than {self.max_bytes / MIB:.1f} MiB; the server accepts at most "
                        f"{limits.max_upload_mib:g} MiB per file")

    def _refusal(self) -> RequestRefused:
        return RequestRefused(413, self.message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error_response(self._refusal())(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:  # chunked uploads carry no Content-Length: count as they come
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._refusal()  # raised inside the endpoint's form parsing -> the handler below answers
            return message

        await self.app(scope, counting_receive, send)


def _error_response(exc: RequestRefused) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _upload(form: FormData, field: str) -> tuple[bytes, str]:
    """Bytes and file name (made one line, at most 200 characters: it is echoed in errors) of one file field."""
    value = form.get(field)
    if not isinstance(value, UploadFile):
        raise RequestRefused(400, f"the request has no '{field}' file; send multipart/form-data with an 'image' file "
                                  "and a 'mask' file (white = hole)")
    return await value.read(), " ".join((value.filename or field).splitlines())[:200]


def _strategy(form: FormData) -> str:
    """The optional ``strategy`` text field (auto when absent or empty)."""
    value = form.get("strategy") or "auto"
    if not isinstance(value, str):
        raise RequestRefused(400, f"'strategy' must be a text field ({' | '.join(STRATEGIES)}), not a file")
    return value.strip()


def create_app(inpainter: Inpainter) -> Starlette:
    """The web app around one ``Inpainter``: the page, its static files and the JSON API."""

    async def run_fill(request: Request) -> FillResult:
        try:
            async with request.form(max_files=2, max_fields=4) as form:
                (image, image_name), (mask, mask_name) = await _upload(form, "image"), await _upload(form, "mask")
                strategy = _strategy(form)
        except HTTPException as exc:  # Starlette's answer to malformed multipart or too many files
            raise RequestRefused(400, f"the request is not a valid upload: {exc.detail}") from exc
        return await run_in_threadpool(inpainter.fill, image, image_name, mask, mask_name, strategy)

    async def fill_json(request: Request) -> Response:
        result = await run_fill(request)
        return JSONResponse({
            "result": data_url(result.result_png), "flow": None if result.flow_png is None else data_url(result.flow_png),
            "width": result.width, "height": result.height, "hole_pixels": result.hole_pixels,
            "seconds": round(result.seconds, 3), "strategy": result.strategy,
        })

    async def fill_png(request: Request) -> Response:
        return Response((await run_fill(request)).result_png, media_type="image/png")

    legend = png_bytes(flow_legend())

    async def refused(request: Request, exc: Exception) -> Response:
        return _error_response(exc)

    async def failed(request: Request, exc: Exception) -> Response:  # a bug or out of memory: still one line
        log.error("request %s failed", request.url.path, exc_info=exc)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {reason}"}, status_code=500)

    routes = [
        Route("/", lambda request: FileResponse(STATIC / "index.html")),
        Route("/api/info", lambda request: JSONResponse(inpainter.info())),
        Route("/api/flow-legend.png", lambda request: Response(legend, media_type="image/png")),
        Route("/api/fill", fill_json, methods=["POST"]),
        Route("/api/fill.png", fill_png, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={RequestRefused: refused, Exception: failed})
    app.add_middleware(BodyLimit, limits=inpainter.limits)
    return app


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or a one-line error (port in use, unknown host) before anything starts."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise PixelSSLError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def serve(weights: str | Path, host: str = "127.0.0.1", port: int = 7860, limits: ServeLimits | None = None,
          device: str = "cpu") -> None:
    """Load the generator (errors before anything listens), then serve the page until Ctrl-C."""
    import uvicorn

    from pixelssl.inpaint.fill import load_generator

    generator = load_generator(weights, device)
    inpainter = Inpainter(generator, limits, weights_name=Path(weights).name)
    if host not in LOOPBACK_HOSTS:
        log.warning("listening on %s: anyone who can reach this machine can use the page (there is no login); "
                    "use --host 127.0.0.1 to keep it local", host)
    sock = open_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"inpainting page: http://{shown}:{sock.getsockname()[1]}/  (Ctrl-C to stop)", flush=True)
    uvicorn.Server(uvicorn.Config(create_app(inpainter), log_level="warning")).run(sockets=[sock])
