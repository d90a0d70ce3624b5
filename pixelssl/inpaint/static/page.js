// The inpainting page: load an image onto a canvas (choose, drop or paste it), paint the hole on a second canvas
// (or load a mask image), send both and the strategy to POST /api/fill and show the result (with a slider and a
// hold-C view comparing it with the original), the attention flow and a download link.
// The mask is a history of actions (strokes, mask uploads, clears): undo drops the last one and repaints the rest.
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
  fill: null, // from /api/info: strategies and the working size of "crop"
  imageBlob: null, // what is sent: the original file, or a downscaled PNG of it
  imageName: "",
  originalUrl: "", // an object URL of the image sent with the shown result
  stroke: null, // the stroke being painted: {kind: "stroke", erase, width, points}
  history: [], // the mask's actions, oldest first: strokes, {kind: "mask", pixels}, {kind: "clear"}
  undone: [], // actions undone, the most recent last (redo takes them back)
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
    state.fill = info.fill;
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
  for (const id of ["image-canvas", "original", "flow"]) $(id).style.width = displayWidth;
  const context = imageCanvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(image, 0, 0, width, height);
  state.imageName = file.name;
  state.imageBlob = scale < 1 ? await canvasBlob(imageCanvas) : file;
  $("mask-input").value = ""; // a new image starts with an empty mask and no history
  state.history = [];
  state.undone = [];
  updateHistoryButtons();
  $("stage").hidden = false;
  $("results").hidden = true;
  for (const id of ["mask-input", "clear-mask", "fill"]) $(id).disabled = false;
  showStatus(scale < 1
    ? `Downscaled '${file.name}' from ${width0}x${height0} to ${width}x${height} px (the server's limit is `
      + `${state.limits.max_side} px per side). Paint the hole, then press Fill.`
    : `Loaded '${file.name}' (${width}x${height} px). Paint the hole, then press Fill.`);
  showStrategyHint();
}

// An image dropped or pasted onto the page: the file input no longer names the image shown.
function openImage(file) {
  $("image-input").value = "";
  loadImage(file);
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
  record({ kind: "mask", pixels });
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

// One segment of a stroke (from === to: a dot), drawn with the stroke's own settings.
function paint(stroke, from, to) {
  maskContext.globalCompositeOperation = stroke.erase ? "destination-out" : "source-over";
  maskContext.strokeStyle = `rgb(${HOLE_COLOUR.join(",")})`;
  maskContext.lineWidth = stroke.width;
  maskContext.lineCap = maskContext.lineJoin = "round";
  maskContext.beginPath();
  maskContext.moveTo(...from);
  maskContext.lineTo(...to);
  maskContext.stroke();
}

// Draw one action of the history on the mask canvas, exactly as it was drawn first (the same segments).
function apply(action) {
  if (action.kind === "clear") {
    maskContext.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  } else if (action.kind === "mask") {
    maskContext.putImageData(action.pixels, 0, 0);
  } else {
    action.points.forEach((point, i) => paint(action, action.points[Math.max(0, i - 1)], point));
  }
}

function updateHistoryButtons() {
  $("undo").disabled = state.history.length === 0;
  $("redo").disabled = state.undone.length === 0;
}

// A new action: drawn, kept for undo; whatever was undone can no longer be redone.
function record(action) {
  state.history.push(action);
  state.undone = [];
  apply(action);
  updateHistoryButtons();
}

function undo() {
  if (state.stroke || state.history.length === 0) return;
  state.undone.push(state.history.pop());
  // repaint from the last action that replaces the whole mask (an upload or a clear), or from an empty mask
  const start = Math.max(0, state.history.findLastIndex((action) => action.kind !== "stroke"));
  maskContext.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  state.history.slice(start).forEach(apply);
  updateHistoryButtons();
}

function redo() {
  if (state.stroke || state.undone.length === 0) return;
  const action = state.undone.pop();
  state.history.push(action);
  apply(action);
  updateHistoryButtons();
}

maskCanvas.addEventListener("pointerdown", (event) => {
  if (!state.imageBlob || event.button !== 0) return;
  maskCanvas.setPointerCapture(event.pointerId);
  const box = maskCanvas.getBoundingClientRect();
  state.stroke = { kind: "stroke", erase: $("erase").checked, points: [canvasPoint(event)],
    width: Number($("brush").value) * maskCanvas.width / box.width }; // the brush size is in screen px
  record(state.stroke);
});
maskCanvas.addEventListener("pointermove", (event) => {
  if (!state.stroke) return;
  const points = state.stroke.points;
  points.push(canvasPoint(event));
  paint(state.stroke, points.at(-2), points.at(-1));
});
for (const type of ["pointerup", "pointercancel"]) maskCanvas.addEventListener(type, () => { state.stroke = null; });

// "auto" is resolved by the server (crop when the longer side exceeds the working size); say what it will do.
function showStrategyHint() {
  if (!state.fill) return;
  const chosen = $("strategy").value, working = state.fill.working_size;
  const large = Math.max(imageCanvas.width, imageCanvas.height) > working;
  let hint = `auto: crop for images over ${working} px per side, whole for smaller ones.`;
  if (state.imageBlob) {
    const used = chosen === "auto" ? (large ? "crop" : "whole") : chosen;
    hint = `This ${imageCanvas.width}x${imageCanvas.height} px image will be filled with ${used}`
      + (used === "crop" ? ` (each hole on a crop around it, at most ${working} px per side).`
        : " (the whole image at once" + (large ? "; slow for an image this large)." : ")."));
  }
  $("strategy-hint").textContent = hint;
}

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
  form.append("strategy", $("strategy").value);
  const sent = state.imageBlob;
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
    URL.revokeObjectURL(state.originalUrl);
    state.originalUrl = URL.createObjectURL(sent);
    $("original").src = state.originalUrl;
    $("result").src = answer.result;
    const download = $("download");
    download.href = answer.result;
    download.download = `${state.imageName.replace(/\.[^.]*$/, "") || "image"}_filled.png`;
    $("flow").hidden = answer.flow === null;
    $("no-flow").hidden = answer.flow !== null;
    if (answer.flow !== null) $("flow").src = answer.flow;
    $("results").hidden = false;
    showStatus(`Filled ${answer.hole_pixels} hole pixels of ${answer.width}x${answer.height} px in `
      + `${answer.seconds.toFixed(2)} s (strategy ${answer.strategy}).`, "ok");
  } catch (error) {
    showStatus(`The request failed: ${error.message}. Is the server still running?`, "error");
  } finally {
    clearInterval(ticker);
    $("fill").disabled = false;
  }
}

// The comparison: the result lies over the original, clipped from the left by the slider; "show original" hides it.
function showOriginal(shown) {
  $("compare").classList.toggle("original-shown", shown);
  $("show-original").setAttribute("aria-pressed", String(shown));
}

$("compare-slider").addEventListener("input", (event) => {
  const split = Number(event.target.value);
  $("compare").style.setProperty("--split", `${split}%`);
  event.target.setAttribute("aria-valuetext", split === 0 ? "result only"
    : split === 100 ? "original only" : `original on the left ${split}%, result on the right`);
});
$("show-original").addEventListener("click", (event) => {
  showOriginal(event.target.getAttribute("aria-pressed") !== "true");
});

// Drop an image anywhere on the page (a drop onto a file field stays that field's), or paste one.
const carriesFiles = (event) => event.dataTransfer?.types.includes("Files");
document.addEventListener("dragover", (event) => {
  if (!carriesFiles(event) || event.target instanceof HTMLInputElement) return;
  event.preventDefault();
  document.body.classList.add("dropping");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dropping"); // the pointer left the window
});
document.addEventListener("drop", (event) => {
  document.body.classList.remove("dropping");
  if (!carriesFiles(event) || event.target instanceof HTMLInputElement) return;
  event.preventDefault();
  if (event.dataTransfer.files[0]) openImage(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
  if (!file) return;
  event.preventDefault();
  openImage(file);
});

function changeBrush(direction) {
  const brush = $("brush"), size = Number(brush.value);
  brush.value = size + direction * Math.max(2, Math.round(size / 5)); // a range input keeps it in [min, max]
  brush.dispatchEvent(new Event("input"));
}

function toggleHelp() {
  const help = $("help");
  if (help.open) help.close(); else help.showModal();
}

// Shortcuts (listed in the help dialog): Ctrl/Cmd+Z undo, Ctrl/Cmd+Shift+Z or Ctrl/Cmd+Y redo, [ ] brush size,
// E erase, F fill, C (hold) original, ? help. Single keys are left alone in a drop-down (it selects by letter).
document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.altKey) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (event.ctrlKey || event.metaKey) {
    if (key === "z" && !event.shiftKey) undo();
    else if (key === "z" || key === "y") redo();
    else return;
  } else if (event.target instanceof HTMLSelectElement || ($("help").open && key !== "?")) {
    return;
  } else if (key === "[" || key === "]") {
    changeBrush(key === "]" ? 1 : -1);
  } else if (key === "e") {
    $("erase").checked = !$("erase").checked;
  } else if (key === "f") {
    if (!event.repeat && !$("fill").disabled) fill();
  } else if (key === "c") {
    showOriginal(true);
  } else if (key === "?") {
    toggleHelp();
  } else {
    return;
  }
  event.preventDefault();
});
document.addEventListener("keyup", (event) => { if (event.key.toLowerCase() === "c") showOriginal(false); });
window.addEventListener("blur", () => showOriginal(false)); // a key released in another window

$("image-input").addEventListener("change", (event) => { if (event.target.files[0]) loadImage(event.target.files[0]); });
$("mask-input").addEventListener("change", (event) => { if (event.target.files[0]) loadMask(event.target.files[0]); });
$("brush").addEventListener("input", (event) => { $("brush-size").textContent = event.target.value; });
$("strategy").addEventListener("change", showStrategyHint);
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear-mask").addEventListener("click", () => record({ kind: "clear" }));
$("fill").addEventListener("click", fill);
$("help-button").addEventListener("click", toggleHelp);
const ready = loadInfo().then(showStrategyHint);
