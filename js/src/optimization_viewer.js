// OptimizationViewer view: the synthetic inputs of every start side by side, the objective curve,
// start / stop / resume, and regularizer sliders.
import "./lib/nbvis.css";
import "./optimization_viewer.css";
import { arrayGetter, finiteRange, maxAbs } from "./lib/arrays.js";
import { fmt } from "./lib/colormap.js";
import { numberBox, slider } from "./lib/controls.js";
import { blit } from "./lib/draw.js";
import { publishLayout, tileAt, tileGrid, tileOrigin } from "./lib/grid.js";
import { canvasPoint } from "./lib/pointer.js";
import { command, h, setTraits, setupView } from "./lib/view.js";

const MAX_WIDTH = 960;
const TILE = 140; // target display size of one start, in CSS pixels
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

// name: [label, min, max, step, help]
const SLIDERS = {
  decay: ["L2 decay", 0, 0.5, "any", "x \u2190 (1 \u2212 decay) \u00b7 x after each step"],
  blur_width: ["blur width", 0, 3, "any", "Gaussian blur standard deviation, pixels"],
  blur_every: ["blur every", 0, 16, 1, "blur every k steps (0: never)"],
  norm_pct: ["clip small norm %", 0, 99, "any", "zero the pixels whose norm is below this percentile"],
  contribution_pct: ["clip small contribution %", 0, 99, "any", "zero the pixels that contribute least to the objective"],
  jitter: ["jitter", 0, 16, 1, "random shift of up to this many pixels before each step"],
  scale: ["scale", 0, 0.5, "any", "random zoom by 1 \u00b1 scale"],
  rotate: ["rotate", 0, 45, "any", "random rotation, degrees"],
  tv: ["total variation", 0, 2, "any", "penalty on differences between neighbouring pixels"],
  diversity: ["diversity", 0, 2, "any", "penalty on the similarity between starts (Gram matrices), relative to the objective"],
};

// In the Explorer's column the next unit's view replaces this one (a new widget, drawn a moment
// later): the container keeps the tallest height its views have had, so that nothing around it
// moves while that view is made, nor when a run's last rows arrive.
function keepPlace(el, view) {
  const observer = new ResizeObserver(() => {
    const box = el.parentElement;
    const height = Math.ceil(el.getBoundingClientRect().height);
    if (box && height > (parseFloat(box.style.minHeight) || 0)) box.style.minHeight = `${height}px`;
  });
  observer.observe(el);
  view.dispose(() => observer.disconnect());
}

/**
 * Where pixel {y, x} of a frame is in the input: "pixel (y, x)", or, for frames sent averaged down
 * k x k (too big for one message), "pixels rows a–b, cols c–d (mean of k×k)".
 */
export function pixelPlace(hit, k = 1) {
  if (!(k > 1)) return `pixel (${hit.y}, ${hit.x})`;
  return `pixels rows ${hit.y * k}\u2013${hit.y * k + k - 1}, cols ${hit.x * k}\u2013${hit.x * k + k - 1} (mean of ${k}\u00d7${k})`;
}

function render({ model, el }) {
  const view = setupView(model, el, "optimization-viewer");
  const { on, listen, tooltip } = view;
  const frame = arrayGetter(model, "_frame");
  const vector = arrayGetter(model, "_vector");
  const curve = arrayGetter(model, "_curve");
  const curveSteps = arrayGetter(model, "_curve_steps");
  const frameRange = arrayGetter(model, "_frame_range");

  // ----- toolbar -----
  const title = h("strong");
  const startButton = h("button", { textContent: "\u25b6 Start", title: "new random starts: a new seed, or the one typed in the seed box" });
  const stopButton = h("button", { textContent: "\u25a0 Stop" });
  const resumeButton = h("button", { textContent: "Resume", title: "go on from the current inputs" });
  listen(startButton, "click", () => command(model, "start"));
  listen(stopButton, "click", () => command(model, "stop"));
  listen(resumeButton, "click", () => command(model, "resume"));
  const counter = h("span", { class: "nbvis-counter" });
  const stateText = h("span", { class: "nbvis-muted nbvis-state" });
  const seedInput = numberBox(listen, {
    current: () => model.get("seed"),
    apply: (value) => setTraits(model, { seed: value }),
    max: 2 ** 31 - 1,
  });
  const stepsInput = numberBox(listen, {
    current: () => model.get("steps"),
    apply: (value) => setTraits(model, { steps: value }),
    min: 1,
    max: 1000000,
    width: "7em",
  });
  const bar = h("div", { class: "nbvis-bar" }, [
    title, startButton, stopButton, resumeButton, counter, stateText,
    h("label", {}, ["steps ", stepsInput]), h("label", {}, ["seed ", seedInput]),
  ]);

  // ----- inputs and curve -----
  const images = h("canvas", { class: "nbvis-images" });
  const rangeNote = h("div", { class: "nbvis-muted nbvis-ov-note nbvis-range" });
  const quality = h("table", { class: "nbvis-quality" });
  const compact = Boolean(model.get("compact"));
  const curveCanvas = h("canvas", { class: "nbvis-curve", width: compact ? 320 : 480, height: compact ? 110 : 170 });
  const legend = h("div", { class: "nbvis-muted nbvis-ov-note" });
  const panels = h("div", { class: "nbvis-ov-panels" }, [
    // compact (the Explorer's column): the quality row keeps its place while a run goes on
    h("div", {}, [images, rangeNote, compact ? h("div", { class: "nbvis-quality-box" }, [quality]) : quality]),
    h("div", {}, [curveCanvas, legend]),
  ]);

  // ----- regularizers -----
  const presetSelect = h("select");
  listen(presetSelect, "change", () => {
    if (presetSelect.value !== "custom") setTraits(model, { preset: presetSelect.value });
  });
  const pendingNote = h("span", { class: "nbvis-muted", textContent: "changes apply at the next start or resume" });
  const sliders = h("div", { class: "nbvis-bar" });
  // folded away in a compact layout (the Explorer's column), open otherwise
  const regs = h("details", { class: "nbvis-ov-regs" }, [
    h("summary", { textContent: "priors and regularizers" }),
    h("div", { class: "nbvis-bar" }, [h("label", {}, ["priors ", presetSelect]), pendingNote]), sliders,
  ]);
  regs.open = !compact;
  if (compact) {
    view.root.classList.add("nbvis-ov-compact");
    keepPlace(el, view);
  }
  view.body.append(bar, panels, regs);

  let sliderInputs = {};
  function buildSliders() {
    sliders.replaceChildren();
    sliderInputs = {};
    for (const name of model.get("adjustable") || []) {
      const [label, min, max, step, help] = SLIDERS[name] || [name, 0, 1, "any", ""];
      const value = h("span", { class: "nbvis-muted nbvis-ov-value" });
      const show = (v) => (step === 1 ? String(Math.round(v)) : fmt(v));
      const input = slider(listen, {
        current: () => (model.get("regularizers") || {})[name] ?? min,
        apply: (v) => setTraits(model, { regularizers: { ...model.get("regularizers"), [name]: v } }),
        preview: (v) => {
          value.textContent = show(v);
        },
        min,
        max,
        step,
        title: help,
      });
      input.dataset.name = name;
      sliderInputs[name] = { input, value, show };
      sliders.append(h("label", { title: help }, [label, " ", input, value]));
    }
  }

  function updateControls() {
    const state = model.get("state");
    const step = model.get("step");
    title.textContent = `${model.get("objective_text")} \u00b7 ${model.get("n_starts")} start${model.get("n_starts") > 1 ? "s" : ""}`;
    counter.textContent = `step ${step} / ${Math.max(model.get("steps"), step)}`;
    stateText.textContent = state;
    stopButton.disabled = state !== "running";
    resumeButton.disabled = state === "running";
    seedInput.show();
    stepsInput.show();
    view.root.dataset.step = String(step);
    view.root.dataset.state = state;
  }

  // Only when the priors change (not on every frame, which would pull a slider from under the pointer).
  function updatePriors() {
    const presets = model.get("presets") || [];
    const preset = model.get("preset");
    const options = [...presets, "custom"];
    if (presetSelect.options.length !== options.length) {
      presetSelect.replaceChildren(...options.map((name) => h("option", { value: name, textContent: name })));
    }
    presetSelect.value = preset;
    const values = model.get("regularizers") || {};
    for (const [name, { input, value, show }] of Object.entries(sliderInputs)) {
      if (!(name in values)) continue;
      input.value = String(values[name]);
      value.textContent = show(values[name]);
    }
    pendingNote.style.visibility = model.get("pending") ? "visible" : "hidden";
  }

  // ----- drawing the inputs -----
  let layout = null;

  function drawImages() {
    const f = frame();
    if (!f) return;
    const [n, th, tw, tc] = f.shape;
    let zoom = Math.max(1, Math.floor(TILE / Math.max(th, tw)));
    while (zoom > 1 && n * (tw + 2) * zoom > MAX_WIDTH) zoom--;
    const cols = Math.max(1, Math.min(n, Math.floor(MAX_WIDTH / ((tw + 2) * zoom)) || 1));
    const grid = tileGrid({ count: n, cols, tileW: tw, tileH: th, pitchW: tw + 2, pitchH: th + 2, originX: 1, zoom });
    const image = new ImageData(grid.nativeW, grid.nativeH);
    const px = image.data;
    new Uint32Array(px.buffer).fill(0xff888888); // a gray frame around each start: white inputs stay visible
    const d = f.data;
    for (let s = 0; s < n; s++) {
      const [ox, oy] = tileOrigin(grid, s);
      for (let y = 0; y < th; y++) {
        for (let x = 0; x < tw; x++) {
          const i = ((s * th + y) * tw + x) * tc;
          const o = ((oy + y) * image.width + ox + x) * 4;
          px[o] = d[i];
          px[o + 1] = d[i + (tc === 3 ? 1 : 0)];
          px[o + 2] = d[i + (tc === 3 ? 2 : 0)];
          px[o + 3] = 255;
        }
      }
    }
    blit(images, image, zoom);
    layout = { ...grid, kind: "image" };
    publishLayout(images, grid);
  }

  function drawBars() {
    const v = vector();
    if (!v) return;
    const [n, dims] = v.shape;
    const barW = Math.max(1, Math.min(12, Math.floor(360 / dims)));
    const panelW = dims * barW + 8;
    const panelH = 110;
    const cols = Math.max(1, Math.min(n, Math.floor(MAX_WIDTH / (panelW + 8)) || 1));
    const rows = Math.ceil(n / cols);
    images.width = cols * (panelW + 8);
    images.height = rows * (panelH + 8);
    const ctx = images.getContext("2d");
    ctx.clearRect(0, 0, images.width, images.height);
    const scale = maxAbs(v.data) || 1;
    for (let s = 0; s < n; s++) {
      const ox = (s % cols) * (panelW + 8) + 4;
      const oy = Math.floor(s / cols) * (panelH + 8) + 4;
      const mid = oy + panelH / 2;
      ctx.strokeStyle = COLORS[s % COLORS.length];
      ctx.strokeRect(ox - 2.5, oy - 2.5, panelW + 1, panelH + 1);
      for (let j = 0; j < dims; j++) {
        const value = v.data[s * dims + j];
        const height = (Math.abs(value) / scale) * (panelH / 2 - 4);
        ctx.fillStyle = value >= 0 ? "#c0392b" : "#2e6da4";
        ctx.fillRect(ox + j * barW + 2, value >= 0 ? mid - height : mid, Math.max(1, barW - 1), Math.max(height, 0.5));
      }
      ctx.fillStyle = "#8888";
      ctx.fillRect(ox, mid, panelW - 4, 1);
    }
    layout = { kind: "vector", n, dims, barW, panelW, panelH, cols, scale };
    // one tile per start, split into `bars` equal columns (ARCHITECTURE.md, the data- contract)
    images.dataset.layout = JSON.stringify({
      count: n, cols, rows, zoom: 1, tile: [dims * barW, panelH], pitch: [panelW + 8, panelH + 8], origin: [6, 4], bars: dims,
    });
  }

  function drawCurve() {
    const c = curve();
    const steps = curveSteps();
    const ctx = curveCanvas.getContext("2d");
    const W = curveCanvas.width;
    const H = curveCanvas.height;
    ctx.clearRect(0, 0, W, H);
    const left = 54;
    const bottom = H - 18;
    ctx.strokeStyle = "#8886";
    ctx.strokeRect(left + 0.5, 4.5, W - left - 6, bottom - 4);
    ctx.fillStyle = "#888";
    ctx.font = "10px sans-serif";
    if (!c || !steps || c.shape[0] === 0) {
      ctx.fillText("objective per start", left + 8, 20);
      legend.textContent = "\u00a0"; // the line the values will take: nothing moves when they come
      return;
    }
    const [rows, n] = c.shape;
    const [lo, hi] = finiteRange(c.data);
    const span = hi > lo ? hi - lo : 1;
    const lastStep = steps.data[rows - 1];
    const x = (k) => left + ((steps.data[k] - 1) / Math.max(1, lastStep - 1)) * (W - left - 8);
    const y = (v) => bottom - ((v - lo) / span) * (bottom - 10);
    ctx.fillText(fmt(hi), 2, 12);
    ctx.fillText(fmt(lo), 2, bottom);
    ctx.fillText("step 1", left, H - 4);
    ctx.textAlign = "right";
    ctx.fillText(String(lastStep), W - 8, H - 4);
    ctx.textAlign = "left";
    for (let s = 0; s < n; s++) {
      ctx.strokeStyle = COLORS[s % COLORS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (let k = 0; k < rows; k++) {
        const v = c.data[k * n + s];
        if (k === 0) ctx.moveTo(x(k), y(v));
        else ctx.lineTo(x(k), y(v));
      }
      ctx.stroke();
    }
    const values = model.get("values") || [];
    legend.replaceChildren(
      ...values.map((v, s) => h("span", { style: { color: COLORS[s % COLORS.length] }, textContent: `start ${s + 1}: ${fmt(v)}` })),
    );
  }

  function drawRange() {
    const range = model.get("value_range") || [];
    const k = model.get("frame_pooled");
    const pooled = k > 1 ? `; shown averaged ${k}\u00d7${k} to fit the view (.images are whole)` : "";
    rangeNote.textContent = (range.length === 2
      ? `data range ${fmt(range[0])} \u2026 ${fmt(range[1])} (black \u2026 white); inputs stay inside`
      : "no data range given: each start is shown from its own minimum to maximum") + pooled;
    view.root.dataset.valueRange = range.join(",");
  }

  // The quality row: per start, what tells a meaningful visualization from a fooling image.
  const QUALITY = [
    ["objective", "objective", (v) => fmt(v), "the objective of the input as it is"],
    ["confidence", "P(class), shifted", (v) => `${(100 * v).toFixed(0)}%`, "the model's probability of the class, averaged over every shift of up to 2 pixels"],
    ["similarity", "nearest example", (v, row) => `#${row.nearest} r=${v.toFixed(2)}`, "the most correlated of the unit's 16 top dataset examples"],
    ["diversity", "1 \u2212 corr. to others", (v) => v.toFixed(2), "mean 1 \u2212 correlation with the other starts"],
    ["high_frequency", "high freq.", (v) => `${(100 * v).toFixed(0)}%`, "share of the energy above a quarter cycle per pixel (noise-like when high)"],
  ];
  function drawQuality() {
    const rows = model.get("quality_rows") || [];
    quality.replaceChildren();
    view.root.dataset.quality = String(rows.length);
    if (!rows.length) return;
    const cell = (text, style = {}, className = "") => h("td", { textContent: text, style, class: className });
    const head = h("tr", {}, [cell("")].concat(rows.map((_, s) => cell(`start ${s + 1}`, { color: COLORS[s % COLORS.length] }))));
    // compact: the objective is in the curve's legend already
    const shown = QUALITY.filter(([key]) => key in rows[0] && !(compact && key === "objective"));
    const body = shown.map(([key, label, show, help]) =>
      h("tr", { title: help }, [cell(label, {}, "nbvis-muted")].concat(rows.map((row) => cell(show(row[key], row))))),
    );
    quality.append(head, ...body);
  }

  function draw() {
    updateControls();
    if (model.get("input_kind") === "vector") drawBars();
    else drawImages();
    drawCurve();
    if (hovered) hover(hovered); // the tooltip follows the live values
  }

  // Frames received from Python (for the eye: the counter; for tests: data-frames).
  let frames = 0;
  const countFrame = () => {
    frames++;
    view.root.dataset.frames = String(frames);
  };
  on("_frame", countFrame);
  on("_vector", countFrame);

  // ----- hover -----
  let hovered = null; // the last mouse event over the images, while the pointer is there
  function hover(event) {
    hovered = event;
    if (!layout) return;
    const [px, py] = canvasPoint(images, event);
    const values = model.get("values") || [];
    if (layout.kind === "image") {
      const hit = tileAt(layout, px, py);
      if (!hit) return tooltip.hide();
      let where = "";
      const f = frame();
      const r = frameRange();
      if (hit.inside && f && r) {
        const s = hit.tile;
        const tc = f.shape[3];
        const [lo, hi] = [r.data[2 * s], r.data[2 * s + 1]];
        const base = ((s * f.shape[1] + hit.y) * f.shape[2] + hit.x) * tc;
        const data = Array.from({ length: tc }, (_, c) => fmt(lo + ((hi - lo) * f.data[base + c]) / 255));
        where = `\n${pixelPlace(hit, model.get("frame_pooled"))}: ${data.join(", ")}`;
      } else if (hit.inside) {
        where = `\n${pixelPlace(hit, model.get("frame_pooled"))}`;
      }
      tooltip.show(`start ${hit.tile + 1}\nobjective ${fmt(values[hit.tile])}${where}`, event);
    } else {
      const col = Math.floor(px / (layout.panelW + 8));
      const s = Math.floor(py / (layout.panelH + 8)) * layout.cols + col;
      const j = Math.floor((px - col * (layout.panelW + 8) - 6) / layout.barW);
      if (col >= layout.cols || s >= layout.n || j < 0 || j >= layout.dims) return tooltip.hide();
      const names = model.get("feature_names") || [];
      const value = vector().data[s * layout.dims + j];
      tooltip.show(`start ${s + 1}\n${names[j] ?? `feature ${j}`}: ${fmt(value)}\nobjective ${fmt(values[s])}`, event);
    }
  }
  listen(images, "mousemove", hover);
  listen(images, "mouseleave", () => {
    hovered = null;
    tooltip.hide();
  });

  view.redrawOn(["_frame", "_vector", "_curve", "_curve_steps", "values", "step", "state", "steps", "seed"], draw);
  const schedulePriors = view.redrawOn(["presets", "preset", "regularizers", "pending"], updatePriors);
  view.redrawOn(["quality_rows"], drawQuality);
  view.redrawOn(["value_range", "frame_pooled"], drawRange);
  on("adjustable", () => {
    buildSliders();
    schedulePriors();
  });
  buildSliders();
  updatePriors();
  drawRange();
  drawQuality();
  draw();
  return view.cleanup;
}

export default { render };
