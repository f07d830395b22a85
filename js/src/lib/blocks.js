// What the building-block views (neuron groups, semantic dictionary) share: the input bar
// (dataset slider, upload), the input drawn in gray or color, and feature-visualization icons.
// Their style is blocks.css, which each of the two views imports.
import { readUpload } from "./upload.js";
import { decode } from "./arrays.js";
import { sendBytes } from "./export.js";
import { blit } from "./draw.js";
import { keepKeys, numberBox, slider } from "./controls.js";
import { h, setTraits } from "./view.js";

/** "#rrggbb" -> [r, g, b] */
export function rgbOf(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** The input (C, H, W) as gray values in [0, 1] per pixel (the mean over channels, on its own range). */
export function grayOf(input) {
  const [c, hgt, wid] = input.shape.length === 3 ? input.shape : [1, ...input.shape.slice(-2)];
  const plane = hgt * wid;
  const gray = new Float32Array(plane);
  let lo = Infinity;
  let hi = -Infinity;
  for (let p = 0; p < plane; p++) {
    let v = 0;
    for (let k = 0; k < c; k++) v += input.data[k * plane + p];
    v /= c;
    gray[p] = v;
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (lo >= 0 && hi <= 1) [lo, hi] = [0, 1];
  const span = hi > lo ? hi - lo : 1;
  for (let p = 0; p < plane; p++) gray[p] = Number.isFinite(gray[p]) ? (gray[p] - lo) / span : 0;
  return { gray, hgt, wid, c };
}

/** Draw the input (C, H, W) at `zoom`: RGB for 3 channels, gray otherwise (dimmed by `dim`). */
export function drawInput(canvas, input, zoom, dim = 1) {
  const [c, hgt, wid] = input.shape;
  const plane = hgt * wid;
  const image = new ImageData(wid, hgt);
  const { gray } = grayOf(input);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of input.data) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo >= 0 && hi <= 1) [lo, hi] = [0, 1];
  for (let p = 0; p < plane; p++) {
    for (let k = 0; k < 3; k++) {
      const v = c === 3 ? (input.data[k * plane + p] - lo) / (hi - lo || 1) : gray[p];
      image.data[p * 4 + k] = 255 * dim * Math.max(0, Math.min(1, v));
    }
    image.data[p * 4 + 3] = 255;
  }
  return blit(canvas, image, zoom);
}

/** The icons trait decoded: {count, get(i) -> ImageData | null, state(i), step(i)}. */
export function iconSet(model) {
  const packed = model.get("_icons");
  const icons = decode(packed);
  const states = model.get("_icon_state") || [];
  const steps = model.get("_icon_step") || [];
  if (!icons) return { count: 0, get: () => null, state: () => "none", step: () => 0 };
  const [n, hgt, wid, c] = icons.shape;
  const size = hgt * wid * c;
  return {
    count: n,
    state: (i) => states[i] || "none",
    step: (i) => steps[i] || 0,
    get(i) {
      if (i < 0 || i >= n) return null;
      const image = new ImageData(wid, hgt);
      const o = i * size;
      for (let p = 0; p < hgt * wid; p++) {
        for (let k = 0; k < 3; k++) image.data[p * 4 + k] = icons.data[o + p * c + (c === 3 ? k : 0)];
        image.data[p * 4 + 3] = 255;
      }
      return image;
    },
  };
}

/** A canvas of icon i, `size` CSS px wide, with data-state (done | running | example | none). */
export function iconCanvas(set, i, size) {
  const canvas = h("canvas", { class: "nbvis-bk-icon" });
  const image = set.get(i);
  canvas.dataset.state = set.state(i);
  canvas.dataset.step = String(set.step(i));
  canvas.title = { done: "feature visualization", running: `feature visualization (step ${set.step(i)}, forming)`,
    pending: "top dataset example (its feature visualization is on the way)", example: "top dataset example (its feature visualization is on the way)",
    none: "no icon yet" }[set.state(i)] || set.state(i);
  if (!image) {
    canvas.width = size;
    canvas.height = size;
    return canvas;
  }
  const off = new OffscreenCanvas(image.width, image.height);
  off.getContext("2d").putImageData(image, 0, 0);
  canvas.width = size;
  canvas.height = Math.round((size * image.height) / image.width);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  return canvas;
}

/**
 * The input bar: a layer picker, a dataset slider (when there is a dataset) and an upload box.
 * Returns {element, update(), status}. Uploads go to Python as {type: "input", source: "upload"}.
 */
export function inputBar(model, view, title, extra = []) {
  const { listen, on } = view;
  const layerSelect = h("select", { class: "nbvis-bk-layer" });
  listen(layerSelect, "change", () => setTraits(model, { layer: layerSelect.value }));
  keepKeys(listen, layerSelect);
  const last = () => Math.max(0, model.get("dataset_size") - 1);
  const pick = (i) => setTraits(model, { index: i });
  const index = () => model.get("index");
  const indexSlider = slider(listen, { current: index, apply: pick, min: 0, max: last, width: "180px", title: "dataset sample" });
  const indexBox = numberBox(listen, { current: index, apply: pick, min: 0, max: last, width: "5em" });
  const datasetGroup = h("label", { class: "nbvis-bk-dataset" }, ["sample ", indexSlider, indexBox]);
  const fileInput = h("input", { type: "file", accept: "image/*", class: "nbvis-bk-file" });
  const status = h("span", { class: "nbvis-muted nbvis-bk-status" });
  const element = h("div", { class: "nbvis-bar" }, [h("strong", { textContent: title }), h("label", {}, ["layer ", layerSelect]),
    ...extra, datasetGroup, h("label", {}, ["upload ", fileInput]), status]);

  let seq = 0;
  listen(fileInput, "change", async () => {
    const file = await readUpload(fileInput, model.get("upload_max_bytes"), status);
    if (!file) return;
    seq += 1;
    sendBytes(model, { type: "input", source: "upload", seq, name: file.name }, file.bytes); // base64 text where buffers are dropped
  });

  function update() {
    const layers = model.get("layers") || [];
    if (layerSelect.options.length !== layers.length || [...layerSelect.options].some((o, i) => o.value !== layers[i])) {
      layerSelect.replaceChildren(...layers.map((name) => h("option", { value: name, textContent: name })));
    }
    layerSelect.value = model.get("layer");
    datasetGroup.style.display = model.get("dataset_size") > 0 ? "" : "none";
    indexSlider.show();
    indexBox.show();
  }
  on("layers", update);
  return { element, update, status };
}
