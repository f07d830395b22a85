// ActivationHeatmap view: the input (drawable), every layer's activations, the selected unit's
// gradient map and top examples. Hover reads values already in the browser: no kernel message.
import { arrayGetter, decode, finiteRange, maxAbs } from "./lib/arrays.js";
import { DIVERGING, SEQUENTIAL, fmt, gradientCss, lutIndex, setPixel } from "./lib/colormap.js";
import { blit, boundSelect, command, h, setTraits, setupView } from "./lib/view.js";
import { sendBytes } from "./lib/export.js";
import { themeColors } from "./lib/theme.js";

const LAYER_WIDTH = 420; // CSS px available to one layer's canvas
const INPUT_WIDTH = 224;
const MAX_MAPS = 256; // channel maps drawn per conv layer
const BAR_ROW = 16;
const EXTRA_CSS = `
.nbvis-activation-heatmap .nbvis-ah-main { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.nbvis-activation-heatmap .nbvis-ah-side { display: flex; flex-direction: column; gap: 8px; width: ${INPUT_WIDTH + 16}px; }
.nbvis-activation-heatmap .nbvis-ah-layers { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: flex-start; flex: 1; min-width: 260px; }
.nbvis-activation-heatmap .nbvis-ah-panel { display: flex; flex-direction: column; gap: 3px; }
.nbvis-activation-heatmap .nbvis-ah-title { font-weight: 600; }
.nbvis-activation-heatmap .nbvis-ah-stack { position: relative; line-height: 0; }
.nbvis-activation-heatmap .nbvis-ah-stack canvas.nbvis-ah-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.nbvis-activation-heatmap canvas.nbvis-ah-draw { cursor: crosshair; touch-action: none; }
.nbvis-activation-heatmap canvas.nbvis-ah-units { cursor: pointer; }
.nbvis-activation-heatmap .nbvis-ah-top { display: flex; flex-wrap: wrap; gap: 6px; }
.nbvis-activation-heatmap .nbvis-ah-top figure { margin: 0; text-align: center; cursor: pointer; }
.nbvis-activation-heatmap .nbvis-ah-top figcaption { font-size: 10px; line-height: 1.2; }
.nbvis-activation-heatmap video { display: none; }
`;

function ensureExtraStyle() {
  if (document.getElementById("nbvis-ah-style")) return;
  const style = document.createElement("style");
  style.id = "nbvis-ah-style";
  style.textContent = EXTRA_CSS;
  document.head.appendChild(style);
}

/** The color scale of a set of values: sequential from 0 when none is negative, else diverging around 0. */
function scaleOf(data, diverging = false) {
  const [lo, hi] = finiteRange(data);
  if (!diverging && lo >= 0) return { table: SEQUENTIAL, lo: 0, hi: hi > 0 ? hi : 1 };
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  return { table: DIVERGING, lo: -m, hi: m };
}

/** Display range of an input image: [0, 1] when every finite value lies there, else its own range. */
function imageRange(data) {
  const [lo, hi] = finiteRange(data);
  return lo >= 0 && hi <= 1 ? [0, 1] : [lo, hi > lo ? hi : lo + 1];
}

/** Geometry of a layer drawn as a grid: dense units as a near-square grid, conv channels as tiles. */
function gridGeometry(entry, units) {
  if (entry.kind === "conv") {
    const [mh, mw] = entry.maps;
    const shown = Math.min(units, MAX_MAPS);
    const cols = Math.max(1, Math.ceil(Math.sqrt((shown * (mh + 1)) / (mw + 1))));
    const rows = Math.ceil(shown / cols);
    const nativeW = cols * (mw + 1) + 1;
    const nativeH = rows * (mh + 1) + 1;
    const zoom = Math.max(1, Math.min(8, Math.floor(LAYER_WIDTH / nativeW)));
    return { kind: "conv", mh, mw, shown, cols, rows, nativeW, nativeH, zoom };
  }
  const cols = Math.max(1, Math.ceil(Math.sqrt(units)));
  const rows = Math.ceil(units / cols);
  const zoom = Math.max(2, Math.min(24, Math.floor(Math.min(LAYER_WIDTH, 260) / cols)));
  return { kind: "dense", shown: units, cols, rows, nativeW: cols, nativeH: rows, zoom };
}

/** Draw `values` (a layer's activation, or a gradient over a layer) on `canvas` as a grid. */
function drawGrid(canvas, entry, values, scale) {
  const units = entry.kind === "conv" ? entry.shape[0] : values.length;
  const g = gridGeometry(entry, units);
  const image = new ImageData(g.nativeW, g.nativeH);
  if (g.kind === "conv") {
    const size = g.mh * g.mw;
    for (let c = 0; c < g.shown; c++) {
      const ox = (c % g.cols) * (g.mw + 1) + 1;
      const oy = Math.floor(c / g.cols) * (g.mh + 1) + 1;
      for (let y = 0; y < g.mh; y++) {
        for (let x = 0; x < g.mw; x++) {
          setPixel(image, (oy + y) * g.nativeW + ox + x, scale.table, lutIndex(values[c * size + y * g.mw + x], scale.lo, scale.hi));
        }
      }
    }
  } else {
    for (let i = 0; i < units; i++) setPixel(image, i, scale.table, lutIndex(values[i], scale.lo, scale.hi));
  }
  const ctx = blit(canvas, image, g.zoom);
  return { ...g, ctx, units };
}

/** Which unit (and position) of a grid drawn by drawGrid is under the canvas point (px, py). */
function gridHit(g, px, py) {
  const nx = Math.floor(px / g.zoom);
  const ny = Math.floor(py / g.zoom);
  if (g.kind === "conv") {
    const col = Math.floor(nx / (g.mw + 1));
    const row = Math.floor(ny / (g.mh + 1));
    const c = row * g.cols + col;
    const x = nx - col * (g.mw + 1) - 1;
    const y = ny - row * (g.mh + 1) - 1;
    if (col >= g.cols || c >= g.shown || x < 0 || y < 0 || x >= g.mw || y >= g.mh) return null;
    return { unit: c, y, x, flat: c * g.mh * g.mw + y * g.mw + x };
  }
  const i = ny * g.cols + nx;
  if (nx >= g.cols || i >= g.units || i < 0) return null;
  return { unit: i, flat: i };
}

/** The canvas rectangle (CSS-independent canvas px) of a unit of a grid. */
function gridRect(g, unit) {
  if (g.kind === "conv") {
    const col = unit % g.cols;
    const row = Math.floor(unit / g.cols);
    return [col * (g.mw + 1) * g.zoom, row * (g.mh + 1) * g.zoom, (g.mw + 2) * g.zoom, (g.mh + 2) * g.zoom];
  }
  return [(unit % g.cols) * g.zoom, Math.floor(unit / g.cols) * g.zoom, g.zoom, g.zoom];
}

/** Output units as labeled horizontal bars. */
function drawBars(canvas, values, labels, selected) {
  const n = values.length;
  const width = 300;
  const labelW = 70;
  const valueW = 64;
  canvas.width = width;
  canvas.height = n * BAR_ROW + 2;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const m = maxAbs(values) || 1;
  const [lo] = finiteRange(values);
  const zeroX = lo < 0 ? labelW + (width - labelW - valueW) / 2 : labelW;
  const span = lo < 0 ? (width - labelW - valueW) / 2 : width - labelW - valueW;
  let best = -1;
  for (let i = 0; i < n; i++) if (Number.isFinite(values[i]) && (best < 0 || values[i] > values[best])) best = i;
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  const theme = themeColors(canvas); // labels in the notebook's text colors (light in a dark theme)
  for (let i = 0; i < n; i++) {
    const y = i * BAR_ROW + 1;
    const v = values[i];
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "right";
    ctx.fillText(labels[i] ?? String(i), labelW - 6, y + BAR_ROW / 2);
    if (Number.isFinite(v)) {
      const w = (v / m) * span;
      ctx.fillStyle = i === best ? "#d6604d" : "#4393c3";
      ctx.fillRect(w >= 0 ? zeroX : zeroX + w, y + 2, Math.abs(w), BAR_ROW - 4);
    } else {
      ctx.fillStyle = "rgb(0,200,0)";
      ctx.fillRect(zeroX, y + 2, span, BAR_ROW - 4);
    }
    ctx.fillStyle = theme.text;
    ctx.textAlign = "left";
    ctx.fillText(fmt(v), width - valueW + 4, y + BAR_ROW / 2);
    if (i === selected) {
      ctx.strokeStyle = "#f90";
      ctx.lineWidth = 2;
      ctx.strokeRect(1, y, width - 2, BAR_ROW);
    }
  }
  ctx.strokeStyle = "#999";
  ctx.beginPath();
  ctx.moveTo(zeroX + 0.5, 0);
  ctx.lineTo(zeroX + 0.5, canvas.height);
  ctx.stroke();
  return { kind: "bars", units: n, best };
}

/** Draw an image (C, H, W) with C of 1 or 3 on a canvas; gray/RGB in `range`, or a colormap `scale`. */
function drawImage(canvas, data, layout, { range = null, scale = null, zoom = null, sumChannels = false } = {}) {
  const [c, hgt, wid] = layout;
  const image = new ImageData(wid, hgt);
  const plane = hgt * wid;
  const [lo, hi] = range || [0, 1];
  for (let p = 0; p < plane; p++) {
    if (scale) {
      let v = data[p];
      if (sumChannels) for (let k = 1; k < c; k++) v += data[k * plane + p];
      setPixel(image, p, scale.table, lutIndex(v, scale.lo, scale.hi));
      continue;
    }
    const o = p * 4;
    let bad = false;
    for (let k = 0; k < 3; k++) {
      const v = data[(c === 3 ? k : 0) * plane + p];
      if (!Number.isFinite(v)) bad = true;
      image.data[o + k] = (255 * (v - lo)) / (hi - lo);
    }
    if (bad) {
      image.data[o] = 0;
      image.data[o + 1] = 200;
      image.data[o + 2] = 0;
    }
    image.data[o + 3] = 255;
  }
  const z = zoom || Math.max(1, Math.floor(INPUT_WIDTH / Math.max(wid, hgt)));
  blit(canvas, image, z);
  return { kind: "image", zoom: z, c, hgt, wid };
}

function render({ model, el }) {
  ensureExtraStyle();
  const view = setupView(model, el, "activation-heatmap");
  const { on, listen, tooltip, root } = view;
  const input = arrayGetter(model, "_input");
  const grad = arrayGetter(model, "_grad");
  const decoded = new Map(); // layer name -> {packed, array}
  const acts = (name) => {
    const packed = (model.get("_acts") || {})[name];
    const cached = decoded.get(name);
    if (cached && cached.packed === packed) return cached.array;
    const array = decode(packed);
    decoded.set(name, { packed, array });
    return array;
  };

  // ----- toolbar: where the input comes from -----
  const slider = h("input", { type: "range", min: 0, step: 1, style: { width: "220px" } });
  const indexBox = h("input", { type: "number", min: 0, step: 1, style: { width: "5em" } });
  const datasetGroup = h("label", { class: "nbvis-ah-dataset" }, ["sample ", slider, indexBox]);
  const clearButton = h("button", { textContent: "clear", title: "clear the drawing (draw on the input with the mouse; shift-drag erases)" });
  const brush = h("input", { type: "range", min: 0.5, max: 4, step: 0.25, value: 1.5, style: { width: "70px" }, title: "brush size" });
  const drawGroup = h("span", {}, [clearButton, " ", h("label", {}, ["brush ", brush])]);
  const fileInput = h("input", { type: "file", accept: "image/*", style: { maxWidth: "190px" } });
  const webcamButton = h("button", { textContent: "webcam" });
  const status = h("span", { class: "nbvis-muted nbvis-ah-status" });
  const bar = h("div", { class: "nbvis-bar" }, [h("strong", { textContent: "activations" }), datasetGroup, drawGroup,
    h("label", {}, ["upload ", fileInput]), webcamButton, status]);

  // ----- side column: input, selected unit's map, enlarged channel -----
  const inputCanvas = h("canvas", { class: "nbvis-ah-draw" });
  const overlay = h("canvas", { class: "nbvis-ah-overlay" });
  const inputCaption = h("span", { class: "nbvis-muted" });
  const inputPanel = h("div", { class: "nbvis-ah-panel", "data-layer": "input" }, [
    h("span", { class: "nbvis-ah-title", textContent: "input" }), h("div", { class: "nbvis-ah-stack" }, [inputCanvas, overlay]), inputCaption,
  ]);
  const methodSelect = boundSelect(model, on, "method", [["gradient", "gradient"], ["guided", "guided backprop"], ["deconvnet", "deconvnet"]]);
  const wrtSelect = h("select");
  wrtSelect.addEventListener("change", () => setTraits(model, { wrt: wrtSelect.value }));
  const gradCanvas = h("canvas", { class: "nbvis-ah-grad" });
  const gradCaption = h("span", { class: "nbvis-muted" });
  const gradLegend = h("span", { class: "nbvis-colorbar", style: { background: gradientCss(DIVERGING), display: "inline-block" } });
  const gradPanel = h("div", { class: "nbvis-ah-panel nbvis-ah-why" }, [
    h("span", { class: "nbvis-ah-title", textContent: "why: the selected unit" }),
    h("span", {}, [methodSelect, " over ", wrtSelect]), gradCanvas, h("span", {}, [gradLegend]), gradCaption,
  ]);
  const zoomCanvas = h("canvas", { class: "nbvis-ah-zoom" });
  const zoomCaption = h("span", { class: "nbvis-muted" });
  const zoomPanel = h("div", { class: "nbvis-ah-panel" }, [zoomCaption, zoomCanvas]);
  const side = h("div", { class: "nbvis-ah-side" }, [inputPanel, gradPanel, zoomPanel]);
  const layersBox = h("div", { class: "nbvis-ah-layers" });

  // ----- top examples -----
  const topTitle = h("span", { class: "nbvis-ah-title" });
  const topProgress = h("progress", { max: 1, value: 0 });
  const cancelButton = h("button", { textContent: "cancel" });
  const rescanButton = h("button", { textContent: "rescan" });
  const topState = h("span", { class: "nbvis-muted" });
  const topGrid = h("div", { class: "nbvis-ah-top" });
  const topPanel = h("div", { class: "nbvis-ah-panel nbvis-ah-toppanel" }, [
    h("div", { class: "nbvis-bar" }, [topTitle, topProgress, cancelButton, rescanButton, topState]), topGrid,
  ]);
  cancelButton.addEventListener("click", () => command(model, "cancel_top"));
  rescanButton.addEventListener("click", () => command(model, "scan_top"));

  const video = h("video", { playsInline: true, muted: true });
  view.body.append(bar, h("div", { class: "nbvis-ah-main" }, [side, layersBox]), topPanel, video);

  // ----- state -----
  let panels = new Map(); // layer name -> {entry, canvas, title, geometry}
  let layoutFor = null;
  let inputInfo = null;
  let gradInfo = null;
  let hoverField = null;
  let zoomed = null; // {name, unit} of the enlarged channel
  let shownTop = undefined; // the _top value whose examples are on the page
  const drawTimes = [];

  const layout = () => model.get("_layout") || [];
  const inputEntry = () => layout()[0];
  const entryOf = (name) => layout().find((e) => e.name === name && e !== layout()[0]);

  function buildPanels() {
    const entries = layout().slice(1);
    if (layoutFor === model.get("_layout")) return;
    layoutFor = model.get("_layout");
    panels = new Map();
    layersBox.replaceChildren();
    for (const entry of entries) {
      const canvas = h("canvas", { class: "nbvis-ah-units" });
      const title = h("span", { class: "nbvis-ah-title" });
      const range = h("span", { class: "nbvis-muted" });
      const panel = h("div", { class: "nbvis-ah-panel", "data-layer": entry.label, "data-kind": entry.kind }, [title, canvas, range]);
      layersBox.append(panel);
      panels.set(entry.name, { entry, canvas, title, range, panel, geometry: null, scale: null });
      wireLayer(entry.name);
    }
  }

  function selectedPair() {
    const s = model.get("selected");
    return Array.isArray(s) && s.length === 2 ? s : null;
  }

  function drawLayers() {
    const labels = model.get("labels") || [];
    const sel = selectedPair();
    for (const [name, p] of panels) {
      const values = acts(name);
      if (!values) continue;
      const { entry } = p;
      const units = entry.units;
      const shape = entry.shape.length ? entry.shape.join("\u00d7") : "1";
      p.title.textContent = `${entry.label} \u00b7 ${entry.kind === "conv" ? `${units} channels` : `${units} units`} (${shape})`;
      if (entry.kind === "bars") {
        p.geometry = drawBars(p.canvas, values.data, entry.output ? labels : [], sel && sel[0] === name ? sel[1] : -1);
        p.scale = null;
        p.range.textContent = labels.length && p.geometry.best >= 0 ? `top: ${labels[p.geometry.best]}` : "";
        p.panel.dataset.best = String(p.geometry.best);
      } else {
        p.scale = scaleOf(values.data);
        p.geometry = drawGrid(p.canvas, entry, values.data, p.scale);
        const shownNote = entry.kind === "conv" && units > MAX_MAPS ? ` \u00b7 first ${MAX_MAPS} of ${units} shown` : "";
        p.range.textContent = `scale ${fmt(p.scale.lo)} \u2026 ${fmt(p.scale.hi)}${shownNote}`;
        if (sel && sel[0] === name && sel[1] < p.geometry.shown) {
          const [x, y, w, hh] = gridRect(p.geometry, sel[1]);
          p.geometry.ctx.strokeStyle = "#f90";
          p.geometry.ctx.lineWidth = 2;
          p.geometry.ctx.strokeRect(x + 1, y + 1, w - 2, hh - 2);
        }
      }
      for (const [key, value] of Object.entries({ zoom: p.geometry.zoom, cols: p.geometry.cols, mh: p.geometry.mh, mw: p.geometry.mw })) {
        if (value !== undefined) p.panel.dataset[key] = String(value);
      }
    }
  }

  // The input as an image, or as a grid for non-image inputs.
  let paint = null; // drawing buffer (H*W, values 0..1) while the person draws
  function drawInput() {
    const entry = inputEntry();
    const x = input();
    if (!entry || !x) return;
    inputCaption.textContent = model.get("input_caption") || "";
    if (entry.kind === "image") {
      const range = imageRange(x.data);
      inputInfo = { ...drawImage(inputCanvas, paint || x.data, entry.image, { range: paint ? [0, 1] : range }), range };
    } else {
      const scale = scaleOf(x.data);
      inputInfo = { ...drawGrid(inputCanvas, { kind: "dense" }, x.data, scale), scale };
    }
    overlay.width = inputCanvas.width;
    overlay.height = inputCanvas.height;
    drawOverlay();
  }

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!hoverField || !inputInfo || inputInfo.kind !== "image") return;
    const [[top, bottom], [left, right]] = hoverField;
    const z = inputInfo.zoom;
    ctx.strokeStyle = "#ff0";
    ctx.lineWidth = 2;
    ctx.strokeRect(left * z + 1, top * z + 1, (right - left) * z - 2, (bottom - top) * z - 2);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1;
    ctx.strokeRect(left * z - 0.5, top * z - 0.5, (right - left) * z + 1, (bottom - top) * z + 1);
  }

  function drawGradient() {
    const sel = selectedPair();
    const g = grad();
    gradCaption.textContent = model.get("grad_caption") || (sel ? "" : "click a unit to see what changes it");
    // wrt options: the input and every layer before the selected one
    const names = layout().slice(1);
    const upto = sel ? names.findIndex((e) => e.name === sel[0]) : -1;
    const options = [["input", "the input"], ...names.slice(0, Math.max(upto, 0)).map((e) => [e.name, e.label])];
    const key = options.map((o) => o[0]).join("|");
    if (wrtSelect.dataset.key !== key) {
      wrtSelect.replaceChildren(...options.map(([value, text]) => h("option", { value, textContent: text })));
      wrtSelect.dataset.key = key;
    }
    wrtSelect.value = model.get("wrt") || "input";
    if (!g) {
      gradCanvas.width = 0;
      gradCanvas.height = 0;
      gradInfo = null;
      return;
    }
    const scale = scaleOf(g.data, true);
    const wrt = model.get("wrt") || "input";
    const entry = wrt === "input" ? inputEntry() : entryOf(wrt);
    if (entry && entry.kind === "image") {
      const [c] = entry.image;
      const sum = c === 3 ? { ...scaleOf(sumPlanes(g.data, c), true) } : scale;
      gradInfo = { ...drawImage(gradCanvas, g.data, entry.image, { scale: sum, sumChannels: c === 3 }), scale: sum, entry };
    } else if (entry) {
      const gridEntry = entry.kind === "conv" ? entry : { kind: "dense" };
      gradInfo = { ...drawGrid(gradCanvas, gridEntry, g.data, scale), scale, entry };
    }
    root.dataset.gradMax = String(scale.hi);
  }

  function sumPlanes(data, c) {
    const plane = data.length / c;
    const out = new Float32Array(plane);
    for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) out[p] += data[k * plane + p];
    return out;
  }

  function drawZoom() {
    const target = zoomed || (() => {
      const sel = selectedPair();
      const p = sel && panels.get(sel[0]);
      return p && p.entry.kind === "conv" ? { name: sel[0], unit: sel[1] } : null;
    })();
    const p = target && panels.get(target.name);
    const values = p && acts(target.name);
    if (!p || !values || p.entry.kind !== "conv") {
      zoomPanel.style.display = "none";
      return;
    }
    zoomPanel.style.display = "";
    const [mh, mw] = p.entry.maps;
    const size = mh * mw;
    const plane = values.data.subarray(target.unit * size, (target.unit + 1) * size);
    const image = new ImageData(mw, mh);
    for (let i = 0; i < size; i++) setPixel(image, i, p.scale.table, lutIndex(plane[i], p.scale.lo, p.scale.hi));
    blit(zoomCanvas, image, Math.max(1, Math.floor(INPUT_WIDTH / Math.max(mw, mh))));
    zoomCaption.textContent = `${p.entry.label} \u00b7 channel ${target.unit} (enlarged)`;
    zoomPanel.dataset.unit = `${target.name}:${target.unit}`;
  }

  function drawTop() {
    const top = model.get("_top");
    const state = model.get("top_state");
    const size = model.get("dataset_size");
    topPanel.style.display = size > 0 ? "" : "none";
    topProgress.value = model.get("top_progress");
    topState.textContent = state;
    topPanel.dataset.state = state;
    cancelButton.disabled = state !== "running";
    const sel = selectedPair();
    rescanButton.disabled = !sel;
    if (top === shownTop) return; // the examples did not change: keep their canvases
    shownTop = top;
    if (!top || !top.patches) {
      topTitle.textContent = sel ? "top examples" : "top examples: click a unit";
      topGrid.replaceChildren();
      return;
    }
    const label = top.layer === "" ? "output" : top.layer;
    topTitle.textContent = `top examples for ${label}[${top.unit}] \u00b7 ${top.scanned} scanned`;
    const patches = decode(top.patches);
    const values = decode(top.values);
    const indices = decode(top.indices);
    const [k, c, ph, pw] = patches.shape.length === 4 ? patches.shape : [patches.shape[0], 1, 1, patches.data.length / patches.shape[0]];
    const range = imageRange(patches.data);
    const figures = [];
    for (let i = 0; i < k; i++) {
      const canvas = h("canvas");
      const layoutI = [c === 3 ? 3 : 1, ph, pw];
      const slice = patches.data.subarray(i * c * ph * pw, (i + 1) * c * ph * pw);
      drawImage(canvas, slice, layoutI, { range, zoom: Math.max(1, Math.floor(56 / Math.max(ph, pw))) });
      const figure = h("figure", { title: `dataset #${indices.data[i]}: click to use it as the input` }, [
        canvas, h("figcaption", { textContent: `#${indices.data[i]} \u00b7 ${fmt(values.data[i])}` }),
      ]);
      figure.addEventListener("click", () => setTraits(model, { index: indices.data[i] }));
      figures.push(figure);
    }
    topGrid.replaceChildren(...figures);
    topPanel.dataset.count = String(k);
  }

  function updateBar() {
    const size = model.get("dataset_size");
    datasetGroup.style.display = size > 0 ? "" : "none";
    slider.max = String(Math.max(0, size - 1));
    indexBox.max = String(Math.max(0, size - 1));
    if (document.activeElement !== slider) slider.value = String(model.get("index"));
    if (document.activeElement !== indexBox) indexBox.value = String(model.get("index"));
    const drawable = model.get("can_draw") && inputEntry() && inputEntry().kind === "image";
    drawGroup.style.display = drawable ? "" : "none";
    inputCanvas.classList.toggle("nbvis-ah-draw", !!drawable);
    webcamButton.style.display = drawable && navigator.mediaDevices && navigator.mediaDevices.getUserMedia ? "" : "none";
  }

  function draw() {
    const start = performance.now();
    try {
      buildPanels();
      updateBar();
      drawInput();
      drawLayers();
      drawGradient();
      drawZoom();
      drawTop();
    } catch (err) {
      status.textContent = `drawing failed: ${err}`;
      console.error(err);
    }
    const ms = performance.now() - start;
    drawTimes.push(ms);
    if (drawTimes.length > 500) drawTimes.shift();
    root.dataset.drawTimes = drawTimes.map((v) => v.toFixed(2)).join(",");
    root.dataset.drawMs = ms.toFixed(2);
    root.dataset.draws = String(Number(root.dataset.draws || 0) + 1);
    noteRoundTrip();
  }

  // ----- hover and click on layers (no kernel message) -----
  function canvasPoint(canvas, event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * (canvas.width / rect.width), (event.clientY - rect.top) * (canvas.height / rect.height)];
  }

  function unitAt(name, event) {
    const p = panels.get(name);
    if (!p || !p.geometry) return null;
    const [px, py] = canvasPoint(p.canvas, event);
    if (p.entry.kind === "bars") {
      const i = Math.floor((py - 1) / BAR_ROW);
      return i >= 0 && i < p.geometry.units ? { unit: i, flat: i } : null;
    }
    return gridHit(p.geometry, px, py);
  }

  function wireLayer(name) {
    const p = panels.get(name);
    listen(p.canvas, "mousemove", (event) => {
      const hit = unitAt(name, event);
      const values = acts(name);
      if (!hit || !values) {
        tooltip.hide();
        return;
      }
      const v = values.data[hit.flat];
      const lines = [];
      const labels = model.get("labels") || [];
      if (p.entry.kind === "conv") {
        const pos = p.entry.shape.length === 3 ? `(${hit.y}, ${hit.x})` : `${hit.y * p.entry.maps[1] + hit.x}`;
        lines.push(`${p.entry.label} \u00b7 channel ${hit.unit} \u00b7 position ${pos}`, `value ${fmt(v)}`);
        if (!zoomed || zoomed.name !== name || zoomed.unit !== hit.unit) {
          zoomed = { name, unit: hit.unit };
          drawZoom();
        }
        const f = p.entry.field;
        hoverField = f && !f.whole && f.lo.length === 2 ? [[f.lo[0][hit.y], f.hi[0][hit.y]], [f.lo[1][hit.x], f.hi[1][hit.x]]] : null;
        drawOverlay();
        if (hoverField) lines.push(`sees input rows ${hoverField[0][0]}\u2013${hoverField[0][1] - 1}, cols ${hoverField[1][0]}\u2013${hoverField[1][1] - 1}`);
      } else {
        const name0 = p.entry.output && labels[hit.unit] !== undefined ? ` (${labels[hit.unit]})` : "";
        lines.push(`${p.entry.label} \u00b7 unit ${hit.unit}${name0}`, `value ${fmt(v)}`);
        if (p.entry.output && p.entry.shape.length === 1) lines.push(`softmax ${fmt(softmax(values.data, hit.unit))}`);
      }
      tooltip.show(lines.join("\n"), event);
    });
    listen(p.canvas, "mouseleave", () => {
      tooltip.hide();
      hoverField = null;
      zoomed = null;
      drawOverlay();
      drawZoom();
    });
    listen(p.canvas, "click", (event) => {
      const hit = unitAt(name, event);
      if (hit) setTraits(model, { selected: [name, hit.unit] });
    });
  }

  function softmax(data, i) {
    let m = -Infinity;
    for (const v of data) if (v > m) m = v;
    let s = 0;
    for (const v of data) s += Math.exp(v - m);
    return Math.exp(data[i] - m) / s;
  }

  listen(gradCanvas, "mousemove", (event) => {
    const g = grad();
    if (!g || !gradInfo) return tooltip.hide();
    const [px, py] = canvasPoint(gradCanvas, event);
    let flat = null;
    let where = "";
    if (gradInfo.kind === "image") {
      const x = Math.floor(px / gradInfo.zoom);
      const y = Math.floor(py / gradInfo.zoom);
      if (x < 0 || y < 0 || x >= gradInfo.wid || y >= gradInfo.hgt) return tooltip.hide();
      flat = y * gradInfo.wid + x;
      where = `(${y}, ${x})`;
      if (gradInfo.c === 3) {
        const plane = gradInfo.hgt * gradInfo.wid;
        return tooltip.show(`${where}\nR ${fmt(g.data[flat])} G ${fmt(g.data[plane + flat])} B ${fmt(g.data[2 * plane + flat])}`, event);
      }
    } else {
      const hit = gridHit(gradInfo, px, py);
      if (!hit) return tooltip.hide();
      flat = hit.flat;
      where = gradInfo.kind === "conv" ? `channel ${hit.unit} (${hit.y}, ${hit.x})` : `unit ${hit.unit}`;
    }
    tooltip.show(`${where}\n${fmt(g.data[flat])}`, event);
  });
  listen(gradCanvas, "mouseleave", () => tooltip.hide());

  listen(inputCanvas, "mousemove", (event) => {
    if (drawing) return;
    const x = input();
    if (!x || !inputInfo) return;
    const [px, py] = canvasPoint(inputCanvas, event);
    if (inputInfo.kind === "image") {
      const cx = Math.floor(px / inputInfo.zoom);
      const cy = Math.floor(py / inputInfo.zoom);
      if (cx < 0 || cy < 0 || cx >= inputInfo.wid || cy >= inputInfo.hgt) return tooltip.hide();
      const plane = inputInfo.hgt * inputInfo.wid;
      const p = cy * inputInfo.wid + cx;
      const text = inputInfo.c === 3 ? `R ${fmt(x.data[p])} G ${fmt(x.data[plane + p])} B ${fmt(x.data[2 * plane + p])}` : `value ${fmt(x.data[p])}`;
      tooltip.show(`input (${cy}, ${cx})\n${text}`, event);
    } else {
      const hit = gridHit(inputInfo, px, py);
      if (hit) tooltip.show(`input ${hit.unit}\nvalue ${fmt(x.data[hit.flat])}`, event);
      else tooltip.hide();
    }
  });
  listen(inputCanvas, "mouseleave", () => tooltip.hide());

  // ----- sending new inputs: one request in flight at a time, so the kernel never falls behind -----
  let seq = 0;
  let inflight = 0;
  let inflightAt = 0;
  let pendingSend = null;
  const sentAt = new Map();
  const roundTrips = [];

  function send(source, shape, bytes, extra = {}) {
    if (inflight && performance.now() - inflightAt < 3000) {
      pendingSend = () => send(source, shape, bytes, extra);
      return;
    }
    pendingSend = null;
    seq += 1;
    inflight = seq;
    inflightAt = performance.now();
    sentAt.set(seq, inflightAt);
    sendBytes(model, { type: "input", source, seq, shape, ...extra }, bytes);
  }

  function onAck() {
    const done = model.get("_seq_done");
    if (inflight && done >= inflight) {
      inflight = 0;
      if (pendingSend) {
        const next = pendingSend;
        pendingSend = null;
        next();
      }
    }
  }

  function noteRoundTrip() {
    const done = model.get("_seq_done");
    const t0 = sentAt.get(done);
    if (t0 === undefined) return;
    sentAt.delete(done);
    const ms = performance.now() - t0;
    roundTrips.push(ms);
    if (roundTrips.length > 500) roundTrips.shift();
    root.dataset.roundTripMs = ms.toFixed(2);
    root.dataset.roundTrips = roundTrips.map((v) => v.toFixed(2)).join(",");
  }

  // ----- drawing on the input -----
  let drawing = false;
  let erase = false;
  let last = null;

  function paintFromInput() {
    const entry = inputEntry();
    const x = input();
    const [c, hgt, wid] = entry.image;
    const plane = hgt * wid;
    const [lo, hi] = imageRange(x.data);
    paint = new Float32Array(plane);
    for (let p = 0; p < plane; p++) {
      let v = 0;
      for (let k = 0; k < c; k++) v += x.data[k * plane + p];
      v = (v / c - lo) / (hi - lo);
      paint[p] = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
    }
  }

  function stamp(cx, cy) {
    const [, hgt, wid] = inputEntry().image;
    const r = Number(brush.value) * Math.max(1, Math.min(hgt, wid) / 28);
    for (let y = Math.max(0, Math.floor(cy - r - 1)); y <= Math.min(hgt - 1, Math.ceil(cy + r + 1)); y++) {
      for (let x = Math.max(0, Math.floor(cx - r - 1)); x <= Math.min(wid - 1, Math.ceil(cx + r + 1)); x++) {
        const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
        const ink = Math.max(0, Math.min(1, r - d + 0.5));
        const p = y * wid + x;
        paint[p] = erase ? Math.min(paint[p], 1 - ink) : Math.max(paint[p], ink);
      }
    }
  }

  function strokeTo(event) {
    const [px, py] = canvasPoint(inputCanvas, event);
    const z = inputInfo.zoom;
    const point = [px / z, py / z];
    const from = last || point;
    const steps = Math.max(1, Math.ceil(Math.hypot(point[0] - from[0], point[1] - from[1]) / 0.3));
    for (let i = 1; i <= steps; i++) stamp(from[0] + ((point[0] - from[0]) * i) / steps, from[1] + ((point[1] - from[1]) * i) / steps);
    last = point;
    drawInput();
    sendPaint();
  }

  function sendPaint() {
    const bytes = new Uint8Array(paint.length);
    for (let p = 0; p < paint.length; p++) bytes[p] = Math.round(paint[p] * 255);
    const [, hgt, wid] = inputEntry().image;
    send("draw", [hgt, wid, 1], bytes);
  }

  listen(inputCanvas, "pointerdown", (event) => {
    if (!model.get("can_draw") || !inputInfo || inputInfo.kind !== "image") return;
    drawing = true;
    erase = event.shiftKey || event.button === 2;
    last = null;
    inputCanvas.setPointerCapture(event.pointerId);
    tooltip.hide();
    if (!paint) paintFromInput(); // else: strokes the kernel has not answered yet are kept
    strokeTo(event);
  });
  listen(inputCanvas, "pointermove", (event) => {
    if (drawing) strokeTo(event);
  });
  const endStroke = () => {
    drawing = false;
    last = null;
  };
  listen(inputCanvas, "pointerup", endStroke);
  listen(inputCanvas, "pointercancel", endStroke);
  listen(inputCanvas, "contextmenu", (event) => event.preventDefault());
  listen(clearButton, "click", () => {
    if (!inputEntry() || inputEntry().kind !== "image") return;
    const [, hgt, wid] = inputEntry().image;
    paint = new Float32Array(hgt * wid);
    drawInput();
    sendPaint();
  });

  // ----- dataset slider and index box -----
  let sliderTimer = null;
  listen(slider, "input", () => {
    if (sliderTimer) return;
    sliderTimer = setTimeout(() => {
      sliderTimer = null;
      setTraits(model, { index: Number(slider.value) });
    }, 40);
  });
  listen(slider, "change", () => setTraits(model, { index: Number(slider.value) }));
  listen(indexBox, "change", () => {
    const n = model.get("dataset_size");
    const i = Math.max(0, Math.min(n - 1, Math.floor(Number(indexBox.value) || 0)));
    indexBox.value = String(i);
    setTraits(model, { index: i });
  });
  view.dispose(() => sliderTimer && clearTimeout(sliderTimer));

  // ----- upload -----
  listen(fileInput, "change", async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    const limit = model.get("upload_max_bytes");
    if (file.size > limit) {
      status.textContent = `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${(limit / 2 ** 20).toFixed(1)} MiB`;
      fileInput.value = "";
      return;
    }
    status.textContent = "";
    const bytes = new Uint8Array(await file.arrayBuffer());
    inflight = 0; // an upload always goes out
    send("upload", [], bytes, { name: file.name });
    fileInput.value = "";
  });

  // ----- webcam: frames at a modest rate, only while the button is on -----
  let stream = null;
  let timer = null;
  const frame = new OffscreenCanvas(1, 1);
  function stopWebcam() {
    if (timer) clearInterval(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    webcamButton.textContent = "webcam";
  }
  function grabFrame() {
    if (!stream || inflight || video.readyState < 2) return;
    const [, hgt, wid] = inputEntry().image;
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    const scale = Math.min(vw / wid, vh / hgt);
    frame.width = wid;
    frame.height = hgt;
    const ctx = frame.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, (vw - wid * scale) / 2, (vh - hgt * scale) / 2, wid * scale, hgt * scale, 0, 0, wid, hgt);
    const rgba = ctx.getImageData(0, 0, wid, hgt).data;
    send("webcam", [hgt, wid, 4], new Uint8Array(rgba.buffer));
  }
  let starting = false; // a camera has been asked for and not yet given
  let disposed = false;
  listen(webcamButton, "click", async () => {
    if (stream) return stopWebcam();
    if (starting) return;
    starting = true;
    try {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
      if (disposed) return media.getTracks().forEach((t) => t.stop()); // the view went away while asking
      stream = media;
      video.srcObject = stream;
      await video.play();
      if (stream !== media) return; // stopped, or the view went away, while starting
      webcamButton.textContent = "stop webcam";
      const fps = Math.max(0.5, Math.min(15, model.get("webcam_fps")));
      timer = setInterval(grabFrame, 1000 / fps);
    } catch (err) {
      stopWebcam();
      if (!disposed) status.textContent = `webcam unavailable: ${err && err.message ? err.message : err}`;
    } finally {
      starting = false;
    }
  });
  view.dispose(() => {
    disposed = true;
    stopWebcam();
  });

  // ----- redraw when Python changes anything (once per message) -----
  on("_seq_done", onAck);
  view.redrawOn(["_layout", "_input", "_acts", "labels", "selected", "_grad", "grad_caption", "wrt", "index",
    "dataset_size", "input_caption", "can_draw", "_seq_done"], () => {
    if (!drawing && !inflight && !pendingSend) paint = null; // the kernel has caught up with the drawing
    draw();
  });
  // a scan updates only the top-examples panel: the layers are not redrawn for it
  view.redrawOn(["_top", "top_state", "top_progress"], () => {
    try {
      drawTop();
    } catch (err) {
      status.textContent = `drawing failed: ${err}`;
      console.error(err);
    }
  });
  draw();
  return view.cleanup;
}

export default { render };
