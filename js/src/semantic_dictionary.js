// SemanticDictionary view: a reticle over the layer's grid laid on the input follows the pointer;
// beside it, the position's strongest channels as icons with bars normalized by the layer's
// maximum. Hover needs no kernel message; a click on the input pins the position, a click on a
// channel selects it.
import { arrayGetter } from "./lib/arrays.js";
import { fmt } from "./lib/colormap.js";
import "./lib/nbvis.css";
import "./lib/blocks.css";
import { drawInput, iconCanvas, iconSet, inputBar } from "./lib/blocks.js";
import { canvasPoint } from "./lib/pointer.js";
import { h, setTraits, setupView } from "./lib/view.js";

const SIZE = 224;
const ICON = 64;
const BAR = 120;

function render({ model, el }) {
  const view = setupView(model, el, "semantic-dictionary nbvis-blocks");
  const { listen, root } = view;
  const input = arrayGetter(model, "_input");
  const channels = arrayGetter(model, "_channels");
  const values = arrayGetter(model, "_values");
  const bar = inputBar(model, view, "semantic dictionary");

  const inputCanvas = h("canvas", { class: "nbvis-sd-input" });
  const reticle = h("canvas", { class: "nbvis-sd-reticle" });
  const caption = h("span", { class: "nbvis-muted nbvis-sd-caption" });
  const inputCaption = h("span", { class: "nbvis-muted" });
  const entriesBox = h("div", { class: "nbvis-bk-column nbvis-sd-entries" });
  const heading = h("span", { class: "nbvis-bk-title nbvis-sd-heading" });
  view.body.append(bar.element, h("div", { class: "nbvis-bk-main" }, [
    h("div", { class: "nbvis-bk-column" }, [h("div", { class: "nbvis-bk-stack" }, [inputCanvas, reticle]), inputCaption, caption]),
    h("div", { class: "nbvis-bk-column" }, [heading, entriesBox]),
  ]));

  let hover = null; // [row, col] under the pointer, or null: the pinned position is shown

  function shown() {
    return hover || model.get("position") || [0, 0];
  }

  function drawReticle() {
    const [gh, gw] = model.get("grid") || [1, 1];
    reticle.width = inputCanvas.width;
    reticle.height = inputCanvas.height;
    const ctx = reticle.getContext("2d");
    ctx.clearRect(0, 0, reticle.width, reticle.height);
    const cw = reticle.width / gw;
    const ch = reticle.height / gh;
    ctx.strokeStyle = "rgba(255,255,255,0.18)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 1; c < gw; c++) {
      ctx.moveTo(Math.round(c * cw) + 0.5, 0);
      ctx.lineTo(Math.round(c * cw) + 0.5, reticle.height);
    }
    for (let r = 1; r < gh; r++) {
      ctx.moveTo(0, Math.round(r * ch) + 0.5);
      ctx.lineTo(reticle.width, Math.round(r * ch) + 0.5);
    }
    ctx.stroke();
    const [row, col] = shown();
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 4;
    ctx.strokeRect(col * cw + 1, row * ch + 1, cw - 2, ch - 2);
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 2;
    ctx.strokeRect(col * cw + 1, row * ch + 1, cw - 2, ch - 2);
    const pinned = model.get("position") || [0, 0];
    if (hover && (pinned[0] !== row || pinned[1] !== col)) {
      ctx.setLineDash([3, 3]);
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1;
      ctx.strokeRect(pinned[1] * cw + 0.5, pinned[0] * ch + 0.5, cw - 1, ch - 1);
      ctx.setLineDash([]);
    }
    root.dataset.row = String(row);
    root.dataset.col = String(col);
  }

  function drawEntries() {
    const c = channels();
    const v = values();
    if (!c || !v) return;
    const [gh, gw, k] = c.shape;
    const [row, col] = shown();
    const maximum = model.get("maximum");
    const icons = iconSet(model);
    const selected = model.get("selected");
    const layer = model.get("layer");
    const list = [];
    const o = (row * gw + col) * k;
    for (let j = 0; j < k; j++) {
      const channel = c.data[o + j];
      const value = v.data[o + j];
      const norm = maximum > 0 ? Math.max(0, value / maximum) : 0;
      const isSelected = Array.isArray(selected) && selected[0] === layer && selected[1] === channel;
      const fill = h("div", { class: "nbvis-sd-fill", style: { width: `${Math.round(norm * BAR)}px` } });
      const entry = h("div", { class: isSelected ? "nbvis-sd-entry nbvis-bk-selected" : "nbvis-sd-entry", "data-channel": String(channel),
        title: `click to select ${layer}[${channel}]` }, [
        iconCanvas(icons, channel, ICON),
        h("div", { class: "nbvis-bk-column" }, [
          h("span", { textContent: `channel ${channel}` }),
          h("div", { class: "nbvis-sd-track", style: { width: `${BAR}px` } }, [fill]),
          h("span", { class: "nbvis-muted", textContent: `${fmt(value)} (${(norm * 100).toFixed(0)}% of max)` }),
        ]),
      ]);
      listen(entry, "click", () => setTraits(model, { selected: [layer, channel] }));
      list.push(entry);
    }
    entriesBox.replaceChildren(...list);
    heading.textContent = `${layer} at (${row}, ${col}): top ${k} of the layer's channels`;
    const done = icons.count ? [...Array(icons.count).keys()].filter((i) => icons.state(i) === "done").length : 0;
    root.dataset.iconsDone = String(done);
    void gh;
  }

  function draw() {
    try {
      bar.update();
      const x = input();
      if (!x) return;
      const [, hgt, wid] = x.shape;
      drawInput(inputCanvas, x, Math.max(1, Math.floor(SIZE / Math.max(hgt, wid))));
      inputCaption.textContent = model.get("input_caption") || "";
      const [gh, gw] = model.get("grid") || [1, 1];
      caption.textContent = `${model.get("layer")}: ${gh}\u00d7${gw} positions \u00b7 bars: activation \u00f7 the layer's maximum ${fmt(model.get("maximum"))} \u00b7 click to pin a position`;
      drawReticle();
      drawEntries();
    } catch (err) {
      bar.status.textContent = `drawing failed: ${err}`;
      console.error(err);
    }
  }

  function cellAt(event) {
    const [gh, gw] = model.get("grid") || [1, 1];
    const [px, py] = canvasPoint(reticle, event);
    const col = Math.floor((px / reticle.width) * gw);
    const row = Math.floor((py / reticle.height) * gh);
    return col < 0 || row < 0 || col >= gw || row >= gh ? null : [row, col];
  }

  listen(reticle, "mousemove", (event) => {
    const cell = cellAt(event);
    if (!cell || (hover && hover[0] === cell[0] && hover[1] === cell[1])) return;
    hover = cell;
    drawReticle();
    drawEntries();
  });
  listen(reticle, "mouseleave", () => {
    hover = null;
    drawReticle();
    drawEntries();
  });
  listen(reticle, "click", (event) => {
    const cell = cellAt(event);
    if (cell) setTraits(model, { position: cell });
  });

  view.redrawOn(["_input", "_channels", "_values", "maximum", "grid", "position", "selected", "layer", "layers", "index", "dataset_size", "input_caption"], () => view.timed(draw));
  view.redrawOn(["_icons", "_icon_state"], () => {
    try {
      drawEntries();
    } catch (err) {
      console.error(err);
    }
  });
  view.timed(draw);
  return view.cleanup;
}

export default { render };
