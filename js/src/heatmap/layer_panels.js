// One panel per chosen layer: its activation as a grid (dense units, conv channel maps) or as
// bars (the output), its scale, the selected unit outlined; hover shows a unit's value with no
// kernel message, click selects it.
import { fmt, scaleOf } from "../lib/colormap.js";
import { outlineSelection, paintGrid } from "../lib/draw.js";
import { publishLayout } from "../lib/grid.js";
import { canvasPoint } from "../lib/pointer.js";
import { h, setTraits } from "../lib/view.js";
import { drawBars } from "./bars.js";
import { MAX_MAPS, barAt, barLayout, layerGrid, receptiveField, unitAt, unitRect } from "./geometry.js";
import { layerTip } from "./tooltips.js";

const TIMES = "\u00d7";

/**
 * What a layer's header says it holds, each count once: "16 channels of 14×14", "100 units",
 * "784 units (16 maps of 7×7)" for a flattened conv map, "4 units of 8×3" for other shapes.
 */
export function layerCount(entry) {
  const units = entry.units;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (entry.kind === "conv") {
    const rest = entry.shape.slice(1);
    // maps too big for one message come averaged down by `pooled` (the kernel says by how much)
    const pooled = entry.pooled ? `, averaged ${entry.pooled}${TIMES}${entry.pooled} to fit the view` : "";
    return `${plural(units, "channel")}${rest.length ? ` of ${rest.join(TIMES)}` : ""}${pooled}`;
  }
  if (entry.fold) return `${plural(units, "unit")} (${entry.fold[0]} maps of ${entry.fold.slice(1).join(TIMES)})`;
  const rest = entry.shape.slice(1);
  return `${plural(units, "unit")}${rest.length ? ` of ${rest.join(TIMES)}` : ""}`;
}

/**
 * {element, build(), draw(), panel(name)}. `onChannel({name, unit}, field)` runs while the pointer
 * is over a conv channel (field: the input pixels its position sees, or null); `onLeave()` when it
 * leaves a layer.
 */
export function layerPanels(ctx, { onChannel, onLeave }) {
  const { model, view } = ctx;
  const element = h("div", { class: "nbvis-ah-layers" });
  let panels = new Map(); // layer name -> {entry, canvas, title, range, panel, geometry, scale}
  let builtFor = null;

  function hitOf(p, event) {
    if (!p.geometry) return null;
    const [px, py] = canvasPoint(p.canvas, event);
    return p.entry.kind === "bars" ? barAt(p.geometry.units, py) : unitAt(p.geometry, px, py);
  }

  function wire(p) {
    const name = p.entry.name;
    view.listen(p.canvas, "mousemove", (event) => {
      const hit = hitOf(p, event);
      const values = ctx.acts(name);
      if (!hit || !values) return view.tooltip.hide();
      let field = null;
      if (p.entry.kind === "conv") {
        field = receptiveField(p.entry, hit.y, hit.x);
        onChannel({ name, unit: hit.unit }, field);
      }
      view.tooltip.show(layerTip(p.entry, hit, values.data, ctx.labels(), field), event);
    });
    view.listen(p.canvas, "mouseleave", () => {
      view.tooltip.hide();
      onLeave();
    });
    view.listen(p.canvas, "click", (event) => {
      const hit = hitOf(p, event);
      if (hit) setTraits(model, { selected: [name, hit.unit] });
    });
  }

  /** (Re)build the panels when the kernel sends a new layout. */
  function build() {
    if (builtFor === model.get("_layout")) return;
    builtFor = model.get("_layout");
    panels = new Map();
    element.replaceChildren();
    for (const entry of ctx.layerEntries()) {
      const canvas = h("canvas", { class: "nbvis-ah-units" });
      const title = h("span", { class: "nbvis-ah-title" });
      const range = h("span", { class: "nbvis-muted" });
      const panel = h("div", { class: "nbvis-ah-panel", "data-layer": entry.label, "data-kind": entry.kind }, [title, canvas, range]);
      element.append(panel);
      const p = { entry, canvas, title, range, panel, geometry: null, scale: null };
      panels.set(entry.name, p);
      wire(p);
    }
  }

  function drawPanel(p, values, labels, sel) {
    const { entry } = p;
    const units = entry.units;
    p.title.textContent = `${entry.label} \u00b7 ${layerCount(entry)}`;
    const selected = sel && sel[0] === entry.name ? sel[1] : -1;
    if (entry.kind === "bars") {
      p.geometry = drawBars(p.canvas, values.data, entry.output ? labels : [], selected);
      p.scale = null;
      p.range.textContent = labels.length && p.geometry.best >= 0 ? `top: ${labels[p.geometry.best]}` : "";
      p.panel.dataset.best = String(p.geometry.best);
      p.canvas.dataset.layout = JSON.stringify(barLayout(p.geometry.units));
      return;
    }
    p.scale = scaleOf(values.data);
    p.geometry = layerGrid(entry, entry.kind === "conv" ? entry.shape[0] : values.data.length);
    const g = paintGrid(p.canvas, p.geometry, values.data, p.scale, p.geometry.shown);
    const shownNote = entry.kind === "conv" && units > MAX_MAPS ? ` \u00b7 first ${MAX_MAPS} of ${units} shown` : "";
    p.range.textContent = `scale ${fmt(p.scale.lo)} \u2026 ${fmt(p.scale.hi)}${shownNote}`;
    const outlined = p.geometry.kind === "folded" ? p.geometry.units : p.geometry.shown;
    if (selected >= 0 && selected < outlined) outlineSelection(g, unitRect(p.geometry, selected));
    publishLayout(p.canvas, p.geometry);
  }

  return {
    element,
    build,
    /** Draw every layer's current activation. */
    draw() {
      const labels = ctx.labels();
      const sel = ctx.selected();
      for (const p of panels.values()) {
        const values = ctx.acts(p.entry.name);
        if (values) drawPanel(p, values, labels, sel);
      }
    },
    /** The panel of layer `name` ({entry, geometry, scale, ...}), or undefined. */
    panel: (name) => panels.get(name),
  };
}
