// NeuronGroups view: the input with k NMF group maps laid over it in k hues, a legend with each
// group's icon, and each group's attribution to the top classes. Hover isolates a group (no
// kernel message); a click selects it.
import { arrayGetter } from "./lib/arrays.js";
import { DIVERGING, fmt, lutIndex } from "./lib/colormap.js";
import "./lib/nbvis.css";
import "./lib/blocks.css";
import { drawInput, grayOf, iconCanvas, iconSet, inputBar, rgbOf } from "./lib/blocks.js";
import { canvasPoint } from "./lib/pointer.js";
import { slider } from "./lib/controls.js";
import { h, setTraits, setupView } from "./lib/view.js";

const SIZE = 224; // CSS px of the big canvases
const ICON = 56;
const THUMB = 64;

/** Per layer cell, the lighten blend on black of every group's hue times its map value. */
function blendMaps(maps, hues, only) {
  const [k, mh, mw] = maps.shape;
  const image = new ImageData(mw, mh);
  const colors = hues.map(rgbOf);
  for (let p = 0; p < mh * mw; p++) {
    let r = 0;
    let g = 0;
    let b = 0;
    for (let i = 0; i < k; i++) {
      if (only !== null && only !== i) continue;
      const v = maps.data[i * mh * mw + p];
      r = Math.max(r, colors[i][0] * v);
      g = Math.max(g, colors[i][1] * v);
      b = Math.max(b, colors[i][2] * v);
    }
    image.data[p * 4] = r;
    image.data[p * 4 + 1] = g;
    image.data[p * 4 + 2] = b;
    image.data[p * 4 + 3] = 255;
  }
  return image;
}

function scaled(image, width, height, smooth) {
  const off = new OffscreenCanvas(image.width, image.height);
  off.getContext("2d").putImageData(image, 0, 0);
  return (ctx) => {
    ctx.imageSmoothingEnabled = smooth;
    ctx.drawImage(off, 0, 0, width, height);
  };
}

function render({ model, el }) {
  const view = setupView(model, el, "neuron-groups nbvis-blocks");
  const { listen, tooltip, root } = view;
  const input = arrayGetter(model, "_input");
  const maps = arrayGetter(model, "_maps");
  const attribution = arrayGetter(model, "_attribution");

  const kValue = h("span");
  const kSlider = slider(listen, { current: () => model.get("k"), apply: (k) => setTraits(model, { k }),
    preview: (k) => (kValue.textContent = String(k)), min: 1, max: 12, title: "number of groups" });
  kSlider.classList.add("nbvis-ng-k");
  const bar = inputBar(model, view, "neuron groups", [h("label", {}, ["k ", kSlider, kValue])]);

  const inputCanvas = h("canvas", { class: "nbvis-ng-input" });
  const overlayCanvas = h("canvas", { class: "nbvis-ng-overlay" });
  const mapCanvas = h("canvas", { class: "nbvis-ng-maps" });
  const caption = h("span", { class: "nbvis-muted nbvis-ng-caption" });
  const inputCaption = h("span", { class: "nbvis-muted" });
  const pictures = h("div", { class: "nbvis-bk-column" }, [
    h("div", { class: "nbvis-bk-row" }, [
      h("div", { class: "nbvis-bk-column" }, [h("span", { class: "nbvis-bk-title", textContent: "input with groups" }),
        h("div", { class: "nbvis-bk-stack" }, [inputCanvas, overlayCanvas])]),
      h("div", { class: "nbvis-bk-column" }, [h("span", { class: "nbvis-bk-title", textContent: "group maps" }), mapCanvas]),
    ]),
    inputCaption, caption,
  ]);
  const legend = h("div", { class: "nbvis-bk-column nbvis-ng-legend" });
  const table = h("table", { class: "nbvis-ng-table" });
  const tableCaption = h("span", { class: "nbvis-muted nbvis-ng-scale" });
  const tablePanel = h("div", { class: "nbvis-bk-column" }, [h("span", { class: "nbvis-bk-title", textContent: "attribution to the top classes" }), table, tableCaption]);
  view.body.append(bar.element, h("div", { class: "nbvis-bk-main" }, [pictures, legend, tablePanel]));

  let isolated = null; // the group hovered, or null
  let legendRows = []; // per group
  let tableRows = []; // per group
  const rowsOf = (g) => [legendRows[g], tableRows[g]].filter(Boolean);
  function fade() {
    for (let g = 0; g < Math.max(legendRows.length, tableRows.length); g++) {
      for (const node of rowsOf(g)) node.style.opacity = isolated === null || isolated === g ? "1" : "0.35";
    }
  }

  function isolate(i) {
    if (isolated === i) return;
    isolated = i;
    root.dataset.isolated = i === null ? "" : String(i);
    drawMaps();
    fade();
  }

  function drawMaps() {
    const m = maps();
    const x = input();
    if (!m || !x) return;
    const hues = model.get("hues") || [];
    const [, hgt, wid] = x.shape;
    const zoom = Math.max(1, Math.floor(SIZE / Math.max(hgt, wid)));
    drawInput(inputCanvas, x, zoom, 0.45);
    const blend = blendMaps(m, hues, isolated);
    overlayCanvas.width = inputCanvas.width;
    overlayCanvas.height = inputCanvas.height;
    const octx = overlayCanvas.getContext("2d");
    octx.clearRect(0, 0, overlayCanvas.width, overlayCanvas.height);
    scaled(blend, overlayCanvas.width, overlayCanvas.height, true)(octx);
    mapCanvas.width = inputCanvas.width;
    mapCanvas.height = inputCanvas.height;
    scaled(blend, mapCanvas.width, mapCanvas.height, false)(mapCanvas.getContext("2d"));
    root.dataset.k = String(m.shape[0]);
    root.dataset.grid = `${m.shape[1]}x${m.shape[2]}`;
  }

  /** The input in gray times one group's map, tinted by its hue. */
  function thumbnail(i) {
    const m = maps();
    const x = input();
    const canvas = h("canvas", { class: "nbvis-ng-thumb" });
    const [k, mh, mw] = m.shape;
    const { gray, hgt, wid } = grayOf(x);
    const [r, g, b] = rgbOf((model.get("hues") || [])[i] || "#ffffff");
    const image = new ImageData(wid, hgt);
    for (let py = 0; py < hgt; py++) {
      for (let px = 0; px < wid; px++) {
        const v = m.data[i * mh * mw + Math.min(mh - 1, Math.floor((py * mh) / hgt)) * mw + Math.min(mw - 1, Math.floor((px * mw) / wid))];
        const o = (py * wid + px) * 4;
        const level = (0.25 + 0.75 * gray[py * wid + px]) * v;
        image.data[o] = r * level;
        image.data[o + 1] = g * level;
        image.data[o + 2] = b * level;
        image.data[o + 3] = 255;
      }
    }
    canvas.width = THUMB;
    canvas.height = Math.round((THUMB * hgt) / wid);
    scaled(image, canvas.width, canvas.height, false)(canvas.getContext("2d"));
    void k;
    return canvas;
  }

  function hoverable(node, i) {
    listen(node, "mouseenter", () => isolate(i));
    listen(node, "mouseleave", () => isolate(null));
    listen(node, "click", () => setTraits(model, { selected: model.get("selected") === i ? null : i }));
  }

  function drawLegend() {
    const m = maps();
    if (!m || !input()) return;
    const k = m.shape[0];
    const hues = model.get("hues") || [];
    const icons = iconSet(model);
    const selected = model.get("selected");
    legendRows = [];
    const entries = [];
    for (let i = 0; i < k; i++) {
      const swatch = h("span", { class: "nbvis-ng-swatch", style: { background: hues[i] } });
      const entry = h("div", { class: selected === i ? "nbvis-ng-group nbvis-bk-selected" : "nbvis-ng-group", "data-group": String(i) }, [
        swatch, h("span", { class: "nbvis-ng-name", textContent: `group ${i}` }), iconCanvas(icons, i, ICON), thumbnail(i),
      ]);
      hoverable(entry, i);
      legendRows.push(entry);
      entries.push(entry);
    }
    const done = [...Array(k).keys()].filter((i) => icons.state(i) === "done").length;
    legend.replaceChildren(h("span", { class: "nbvis-bk-title", textContent: `groups (icons ${done}/${k})` }), ...entries);
    legend.dataset.iconsDone = String(done);
  }

  function drawTable() {
    const a = attribution();
    const m = maps();
    if (!m) return;
    const labels = model.get("class_labels") || [];
    const scale = model.get("attribution_scale") || 1;
    const hues = model.get("hues") || [];
    if (!a) {
      table.replaceChildren();
      tableCaption.textContent = "the model's output is not one vector of logits: no attribution";
      return;
    }
    const [k, n] = a.shape;
    const head = h("tr", {}, [h("th", { textContent: "group" }), ...labels.map((label) => h("th", { textContent: label }))]);
    const body = [];
    tableRows = [];
    for (let i = 0; i < k; i++) {
      const cells = [];
      for (let j = 0; j < n; j++) {
        const v = a.data[i * n + j] / scale;
        const t = lutIndex(v, -1, 1);
        const dark = Math.abs(v) > 0.55;
        cells.push(h("td", { textContent: v.toFixed(2), title: `group ${i} \u2192 ${labels[j]}: ${fmt(a.data[i * n + j])}`,
          style: { background: `rgb(${DIVERGING[t * 3]},${DIVERGING[t * 3 + 1]},${DIVERGING[t * 3 + 2]})`, color: dark ? "#fff" : "#222" } }));
      }
      const row = h("tr", { "data-group": String(i), class: model.get("selected") === i ? "nbvis-bk-selected" : "" }, [
        h("th", {}, [h("span", { style: { color: hues[i] }, textContent: "\u25a0 " }), String(i)]), ...cells]);
      hoverable(row, i);
      tableRows.push(row);
      body.push(row);
    }
    table.replaceChildren(head, ...body);
    tableCaption.textContent = `sum of group \u00b7 d logit / d activation, divided by the largest |value| (${fmt(scale)}); red: for the class, blue: against`;
  }

  function draw() {
    try {
      bar.update();
      kSlider.show();
      inputCaption.textContent = model.get("input_caption") || "";
      const note = model.get("note");
      caption.textContent = `${model.get("k")} groups at ${model.get("layer")} \u00b7 reconstruction R\u00b2 ${model.get("r2").toFixed(3)}${note ? ` \u00b7 ${note}` : ""} \u00b7 hover a group to isolate it, click to select it`;
      drawMaps();
      drawLegend();
      drawTable();
      if (isolated !== null) {
        const keep = isolated;
        isolated = null;
        isolate(keep);
      }
    } catch (err) {
      bar.status.textContent = `drawing failed: ${err}`;
      console.error(err);
    }
  }

  listen(mapCanvas, "mousemove", (event) => {
    const m = maps();
    if (!m) return;
    const [k, mh, mw] = m.shape;
    const [px, py] = canvasPoint(mapCanvas, event);
    const col = Math.floor((px / mapCanvas.width) * mw);
    const row = Math.floor((py / mapCanvas.height) * mh);
    if (col < 0 || row < 0 || col >= mw || row >= mh) return tooltip.hide();
    const lines = [`position (${row}, ${col})`];
    for (let i = 0; i < k; i++) lines.push(`group ${i}: ${m.data[i * mh * mw + row * mw + col].toFixed(2)}`);
    tooltip.show(lines.join("\n"), event);
  });
  listen(mapCanvas, "mouseleave", () => tooltip.hide());

  view.redrawOn(["_maps", "_input", "_attribution", "hues", "selected", "r2", "class_labels", "layer", "layers", "k", "index", "dataset_size", "input_caption"], () => view.timed(draw));
  view.redrawOn(["_icons", "_icon_state"], () => {
    try {
      drawLegend();
      fade();
    } catch (err) {
      console.error(err);
    }
  });
  view.timed(draw);
  return view.cleanup;
}

export default { render };
