// The why map: the gradient (or guided backprop, deconvnet) of the selected unit over the input or
// an earlier layer, in a diverging scale, with its method and its `wrt` layer to choose.
import { sumPlanes } from "../lib/arrays.js";
import { DIVERGING, fmt, gradientCss, scaleOf } from "../lib/colormap.js";
import { drawImage, paintGrid } from "../lib/draw.js";
import { publishLayout } from "../lib/grid.js";
import { canvasPoint, hoverTip } from "../lib/pointer.js";
import { boundSelect, colorbar, h, setTraits } from "../lib/view.js";
import { imageZoom, layerGrid, pixelAt, realUnit, unitAt } from "./geometry.js";
import { gradTip } from "./tooltips.js";

const METHODS = [["gradient", "gradient"], ["guided", "guided backprop"], ["deconvnet", "deconvnet"]];
const REDUCES = [["weighted", "weighted by its activation here"], ["sum", "summed over positions"], ["max", "at its strongest position"]];

/** The layers a gradient can be taken over for the selection: the input and every layer before it. */
export function wrtOptions(entries, selected) {
  const upto = selected ? entries.findIndex((e) => e.name === selected[0]) : -1;
  return [["input", "the input"], ...entries.slice(0, Math.max(upto, 0)).map((e) => [e.name, e.label])];
}

/** {element, draw()}. `width`: CSS px of the map drawn as an image. */
export function whyPanel(ctx, { width } = {}) {
  const { model, view } = ctx;
  const methodSelect = boundSelect(model, view.on, "method", METHODS);
  // a conv channel: its positions weighted by its own activation on this input, summed, or its
  // strongest one (a selected position is one element: it needs none)
  const reduceSelect = boundSelect(model, view.on, "reduce", REDUCES);
  reduceSelect.classList.add("nbvis-ah-reduce");
  const wrtSelect = h("select");
  view.listen(wrtSelect, "change", () => setTraits(model, { wrt: wrtSelect.value }));
  const canvas = h("canvas", { class: "nbvis-ah-grad" });
  const caption = h("span", { class: "nbvis-muted" });
  const legend = colorbar(gradientCss(DIVERGING));
  legend.element.classList.add("nbvis-ah-why-legend");
  const element = h("div", { class: "nbvis-ah-panel nbvis-ah-why" }, [
    h("span", { class: "nbvis-ah-title", textContent: "why: the selected unit" }),
    h("span", {}, [methodSelect, " over ", wrtSelect]), reduceSelect, canvas, legend.element, caption,
  ]);
  let info = null; // how the map was drawn: an image {zoom, c, hgt, wid} or a layerGrid

  function updateWrt(sel) {
    const options = wrtOptions(ctx.layerEntries(), sel);
    const key = options.map((o) => o[0]).join("|");
    if (wrtSelect.dataset.key !== key) {
      wrtSelect.replaceChildren(...options.map(([value, text]) => h("option", { value, textContent: text })));
      wrtSelect.dataset.key = key;
    }
    wrtSelect.value = model.get("wrt") || "input";
  }

  function draw() {
    const sel = ctx.selected();
    const g = ctx.grad();
    caption.textContent = model.get("grad_caption") || (sel ? "" : "click a unit to see what changes it");
    updateWrt(sel);
    const selectedEntry = sel && ctx.entryOf(sel[0]);
    const channel = selectedEntry && selectedEntry.kind === "conv" && selectedEntry.shape.length === 3 && !ctx.selectedPosition();
    reduceSelect.style.display = channel ? "" : "none";
    if (!g) {
      canvas.width = 0;
      canvas.height = 0;
      info = null;
      legend.element.style.display = "none";
      return;
    }
    const scale = scaleOf(g.data, true);
    const wrt = model.get("wrt") || "input";
    const entry = wrt === "input" ? ctx.inputEntry() : ctx.entryOf(wrt);
    if (entry && entry.kind === "image") {
      const [c, hgt, wid] = entry.image;
      const shown = c === 3 ? scaleOf(sumPlanes(g.data, c), true) : scale;
      info = { ...drawImage(canvas, g.data, entry.image, { scale: shown, sumChannels: c === 3, zoom: imageZoom(wid, hgt, width) }), scale: shown };
      delete canvas.dataset.layout;
    } else if (entry) {
      const grid = layerGrid(entry.kind === "bars" ? { kind: "dense" } : entry, entry.kind === "conv" ? entry.shape[0] : g.data.length);
      paintGrid(canvas, grid, g.data, scale, grid.shown);
      info = { ...grid, scale };
      publishLayout(canvas, grid);
    }
    // the numbers of the scale the map is drawn in (an RGB input's map sums its channels)
    const drawn = info ? info.scale : scale;
    legend.element.style.display = "";
    legend.update(fmt(drawn.lo), fmt(drawn.hi), entry && entry.kind === "image" && entry.image[0] === 3 ? "sum over R, G, B" : "");
    view.root.dataset.gradMax = String(scale.hi);
  }

  hoverTip(view.listen, view.tooltip, canvas, (event) => {
    const g = ctx.grad();
    if (!g || !info) return null;
    const [px, py] = canvasPoint(canvas, event);
    const wrt = model.get("wrt") || "input";
    const entry = wrt === "input" ? ctx.inputEntry() : ctx.entryOf(wrt);
    const hit = info.kind === "image" ? pixelAt(info, px, py) : unitAt(info, px, py);
    return hit && gradTip(info, g.data, hit, entry, entry && info.kind !== "image" ? realUnit(entry, hit) : hit.unit);
  });

  return { element, draw };
}
