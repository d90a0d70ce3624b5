// The inpainting page: load an image onto a canvas, paint the hole on a second canvas (or load a mask image),
// send both to POST /api/fill and show the result, the attention flow and a download link.
// The server checks everything again; the page only downscales images over its side limit before sending.
"use strict";

const $ = (id) => document.getElementById(id);
const imageCanvas = $("image-canvas");
const maskCanvas = $("mask-canvas");
const maskContext = maskCanvas.getContext("2d", { willReadFrequently: true });
const HOLE_COLOUR = [255, 32, 96]; // how painted hole pixels look (the canvas is drawn half transparent)
const MIN_DISPLAY_WIDTH = 384; // small images are shown enlarged so that painting them is practical

const state = {
  limits: null, // from /api/info
  imageBlob: null, // what is sent: the original file, or a downscaled PNG of it
  imageName: "",
  stroke: null, // last pointer position while painting
};

function showStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
}

const mib = (bytes) => (bytes / 1048576).toFixed(1);

async function loadInfo() {
  try {
    const info = await (await fetch("/api/info")).json();
    state.limits = info.limits;
    const model = info.model;
    $("model-info").textContent = `Model ${info.weights}: ${(model.parameters / 1e6).toFixed(2)}M parameters, `
      + (model.contextual_attention ? "with" : "without") + " contextual attention. Limits: "
      + `${info.limits.max_upload_mib} MiB per file, ${info.limits.max_side} px per side `
      + "(larger images are downscaled here before they are sent).";
  } catch (error) {
    showStatus(`Cannot reach the server: ${error.message}`, "error");
  }
}

// Decode a file with an <img> element (applies EXIF orientation, like the server does).
function decodeImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const image = new Image();
    image.onload = () => { URL.revokeObjectURL(url); resolve(image); };
    image.onerror = () => { URL.revokeObjectURL(url); reject(new Error("the browser cannot decode it")); };
    image.src = url;
  });
}

const canvasBlob = (canvas) => new Promise((resolve) => canvas.toBlob(resolve, "image/png"));

async function loadImage(file) {
  await ready;
  if (!state.limits) return; // loadInfo has said why
  let image;
  try {
    image = await decodeImage(file);
  } catch (error) {
    showStatus(`Cannot read image '${file.name}': ${error.message}. Use PNG, JPEG, WebP or BMP.`, "error");
    return;
  }
  const width0 = image.naturalWidth, height0 = image.naturalHeight;
  const scale = Math.min(1, state.limits.max_side / Math.max(width0, height0));
  const width = Math.max(1, Math.round(width0 * scale)), height = Math.max(1, Math.round(height0 * scale));
  imageCanvas.width = maskCanvas.width = width;
  imageCanvas.height = maskCanvas.height = height;
  const displayWidth = width < MIN_DISPLAY_WIDTH ? `${MIN_DISPLAY_WIDTH}px` : "";
  for (const id of ["image-canvas", "result", "flow"]) $(id).style.width = displayWidth;
  const context = imageCanvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, 0, 0, width, height);
  state.imageName = file.name;
  state.imageBlob = scale < 1 ? await canvasBlob(imageCanvas) : file;
  $("mask-input").value = ""; // a new image starts with an empty mask
  $("stage").hidden = false;
  $("results").hidden = true;
  for (const id of ["mask-input", "clear-mask", "fill"]) $(id).disabled = false;
  showStatus(scale < 1
    ? `Downscaled '${file.name}' from ${width0}x${height0} to ${width}x${height} px (the server's limit is `
      + `${state.limits.max_side} px per side). Paint the hole, then press Fill.`
    : `Loaded '${file.name}' (${width}x${height} px). Paint the hole, then press Fill.`);
}

// A mask image: pixels brighter than mid-grey are the hole (the server's rule), resized to the image if needed.
async function loadMask(file) {
  let image;
  try {
    image = await decodeImage(file);
  } catch (error) {
    showStatus(`Cannot read mask '${file.name}': ${error.message}.`, "error");
    return;
  }
  const { width, height } = maskCanvas;
  const scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  const context = scratch.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = false; // nearest neighbour keeps the mask binary
  context.drawImage(image, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height);
  const data = pixels.data;
  let holes = 0;
  for (let i = 0; i < data.length; i += 4) {
    const grey = (data[i] * 299 + data[i + 1] * 587 + data[i + 2] * 114) / 1000; // PIL's "L" conversion
    const hole = grey > 127 && data[i + 3] > 0;
    holes += hole;
    data.set(hole ? [...HOLE_COLOUR, 255] : [0, 0, 0, 0], i);
  }
  maskContext.putImageData(pixels, 0, 0);
  const resized = image.naturalWidth !== width || image.naturalHeight !== height;
  showStatus(`Loaded mask '${file.name}' (${holes} hole pixels`
    + (resized ? `, resized from ${image.naturalWidth}x${image.naturalHeight} to ${width}x${height}` : "")
    + "). Paint to add to it, or press Fill.");
}

// The painted mask as a black/white PNG (opaque painted pixels = white = hole) and its number of hole pixels.
async function maskBlob() {
  const { width, height } = maskCanvas;
  const painted = maskContext.getImageData(0, 0, width, height).data;
  const out = new ImageData(width, height);
  let holes = 0;
  for (let i = 0; i < painted.length; i += 4) {
    const value = painted[i + 3] > 127 ? 255 : 0;
    holes += value > 0;
    out.data.set([value, value, value, 255], i);
  }
  const scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  scratch.getContext("2d").putImageData(out, 0, 0);
  return { blob: await canvasBlob(scratch), holes };
}

function canvasPoint(event) {
  const box = maskCanvas.getBoundingClientRect();
  return [(event.clientX - box.left) * maskCanvas.width / box.width,
    (event.clientY - box.top) * maskCanvas.height / box.height];
}

function paint(from, to) {
  const box = maskCanvas.getBoundingClientRect();
  maskContext.globalCompositeOperation = $("erase").checked ? "destination-out" : "source-over";
  maskContext.strokeStyle = `rgb(${HOLE_COLOUR.join(",")})`;
  maskContext.lineWidth = Number($("brush").value) * maskCanvas.width / box.width; // brush size in screen px
  maskContext.lineCap = maskContext.lineJoin = "round";
  maskContext.beginPath();
  maskContext.moveTo(...from);
  maskContext.lineTo(...to);
  maskContext.stroke();
}

maskCanvas.addEventListener("pointerdown", (event) => {
  if (!state.imageBlob || event.button !== 0) return;
  maskCanvas.setPointerCapture(event.pointerId);
  state.stroke = canvasPoint(event);
  paint(state.stroke, state.stroke);
});
maskCanvas.addEventListener("pointermove", (event) => {
  if (!state.stroke) return;
  const point = canvasPoint(event);
  paint(state.stroke, point);
  state.stroke = point;
});
for (const type of ["pointerup", "pointercancel"]) maskCanvas.addEventListener(type, () => { state.stroke = null; });

async function fill() {
  if (state.imageBlob.size > state.limits.max_upload_bytes) { // the server would refuse it after the upload
    showStatus(`image '${state.imageName}' is ${mib(state.imageBlob.size)} MiB; the server accepts at most `
      + `${state.limits.max_upload_mib} MiB per file`, "error");
    return;
  }
  const mask = await maskBlob();
  if (mask.holes === 0) {
    showStatus("The mask is empty: paint the hole over the image (or upload a mask) first.", "error");
    return;
  }
  const form = new FormData();
  form.append("image", state.imageBlob, state.imageName);
  form.append("mask", mask.blob, "painted-mask.png");
  $("fill").disabled = true;
  const started = Date.now();
  showStatus("Filling...", "busy");
  const ticker = setInterval(() => {  // large images take a while on a CPU: show that it is still working
    showStatus(`Filling... ${Math.round((Date.now() - started) / 1000)} s`, "busy");
  }, 1000);
  try {
    const response = await fetch("/api/fill", { method: "POST", body: form });
    let answer;
    try {
      answer = await response.json();
    } catch {
      answer = { error: `the server answered HTTP ${response.status} without an explanation` };
    }
    if (!response.ok) {
      showStatus(answer.error || `HTTP ${response.status}`, "error");
      return;
    }
    $("result").src = answer.result;
    const download = $("download");
    download.href = answer.result;
    download.download = `${state.imageName.replace(/\.[^.]*$/, "") || "image"}_filled.png`;
    $("flow").hidden = answer.flow === null;
    $("no-flow").hidden = answer.flow !== null;
    if (answer.flow !== null) $("flow").src = answer.flow;
    $("results").hidden = false;
    showStatus(`Filled ${answer.hole_pixels} hole pixels of ${answer.width}x${answer.height} px in `
      + `${answer.seconds.toFixed(2)} s.`, "ok");
  } catch (error) {
    showStatus(`The request failed: ${error.message}. Is the server still running?`, "error");
  } finally {
    clearInterval(ticker);
    $("fill").disabled = false;
  }
}

$("image-input").addEventListener("change", (event) => { if (event.target.files[0]) loadImage(event.target.files[0]); });
$("mask-input").addEventListener("change", (event) => { if (event.target.files[0]) loadMask(event.target.files[0]); });
$("brush").addEventListener("input", (event) => { $("brush-size").textContent = event.target.value; });
$("clear-mask").addEventListener("click", () => maskContext.clearRect(0, 0, maskCanvas.width, maskCanvas.height));
$("fill").addEventListener("click", fill);
const ready = loadInfo();
