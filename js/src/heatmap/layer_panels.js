// One panel per chosen layer: its activation as a grid (dense units, conv channel maps) or as
// bars (the output), its scale, the selected unit outlined; hover shows a unit's value with no
// kernel message, click selects it.
import { fmt, scaleOf } from "../lib/colormap.js";
import { outlineSelection, paintGrid } from "../lib/draw.js";
import { publishLayout } from "../lib/grid.js";
import { canvasPoint } from "../lib/pointer.js";
import { h, setTraits } from "../lib/view.js";
import { drawBars } from "./bars.js";
import { LARGE_WIDTH, LAYER_WIDTH, MAX_MAPS, THUMB_WIDTH, barAt, barLayout, cellRect, layerGrid, realUnit, receptiveField, shownPosition, shownUnit, unitAt, unitRect } from "./geometry.js";
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
  const k = entry.pooled;
  if (entry.fold) {
    const [c, ...maps] = entry.full || entry.fold;
    return `${plural(units, "unit")} (${c} maps of ${maps.join(TIMES)}${k ? `, averaged ${k}${TIMES}${k} to fit the view` : ""})`;
  }
  // a dense layer too big for one message comes in runs of `pooled` units averaged
  if (k) return `${plural(units, "unit")}, averaged in runs of ${k} to fit the view`;
  const rest = entry.shape.slice(1);
  return `${plural(units, "unit")}${rest.length ? ` of ${rest.join(TIMES)}` : ""}`;
}

/**
 * {element, build(), draw(), panel(name), large()}. `onChannel({name, unit}, field)` runs while the
 * pointer is over a conv channel (field: the input pixels its position sees, or null); `onLeave()`
 * when it leaves a layer.
 *
 * `compact` (the Explorer's dashboard): every layer but the output bars as a thumbnail in a strip,
 * the selected unit's layer (else the last one drawn large, else the first) large below them, and
 * the output bars under it. A click on a thumbnail selects the unit under it, as on the large one.
 */
export function layerPanels(ctx, { onChannel, onLeave, compact = false }) {
  const { model, view } = ctx;
  const element = h("div", { class: compact ? "nbvis-ah-layers nbvis-ah-compact" : "nbvis-ah-layers" });
  let panels = new Map(); // layer name -> {entry, canvas, title, range, panel, geometry, scale, width, thumb}
  let large = null; // compact: the panel that draws one layer large (its entry changes)
  let builtFor = null;

  function hitOf(p, event) {
    if (!p.geometry || !p.entry) return null;
    const [px, py] = canvasPoint(p.canvas, event);
    return p.entry.kind === "bars" ? barAt(p.geometry.units, py) : unitAt(p.geometry, px, py);
  }

  function wire(p) {
    view.listen(p.canvas, "mousemove", (event) => {
      const hit = hitOf(p, event);
      const name = p.entry && p.entry.name;
      const values = name != null && ctx.acts(name);
      if (!hit || !values) return view.tooltip.hide();
      let field = null;
      if (p.entry.kind === "conv") {
        field = receptiveField(p.entry, hit.y, hit.x);
        onChannel({ name, unit: hit.unit }, field);
      }
      view.tooltip.show(layerTip(p.entry, hit, values.data, ctx.labels(), field, realUnit(p.entry, hit)), event);
    });
    view.listen(p.canvas, "mouseleave", () => {
      view.tooltip.hide();
      onLeave();
    });
    view.listen(p.canvas, "click", (event) => {
      const hit = hitOf(p, event);
      if (hit) setTraits(model, { selected: [p.entry.name, realUnit(p.entry, hit)] });
    });
  }

  function makePanel(entry, { thumb = false, cls = "" } = {}) {
    const canvas = h("canvas", { class: thumb ? "nbvis-ah-units nbvis-ah-thumbcanvas" : "nbvis-ah-units" });
    const title = h("span", { class: "nbvis-ah-title" });
    const range = h("span", { class: "nbvis-muted" });
    const attrs = { class: `nbvis-ah-panel${thumb ? " nbvis-ah-thumb" : ""}${cls}` };
    if (entry) Object.assign(attrs, { "data-layer": entry.label, "data-kind": entry.kind });
    const panel = h("div", attrs, thumb ? [title, canvas] : [title, canvas, range]);
    const width = thumb ? THUMB_WIDTH : compact ? LARGE_WIDTH : LAYER_WIDTH;
    const p = { entry, canvas, title, range, panel, geometry: null, scale: null, width, thumb };
    wire(p);
    return p;
  }

  /** (Re)build the panels when the kernel sends a new layout. */
  function build() {
    if (builtFor === model.get("_layout")) return;
    builtFor = model.get("_layout");
    panels = new Map();
    element.replaceChildren();
    const strip = h("div", { class: "nbvis-ah-strip" });
    const after = [];
    for (const entry of ctx.layerEntries()) {
      const p = makePanel(entry, { thumb: compact && entry.kind !== "bars" });
      panels.set(entry.name, p);
      if (p.thumb) strip.append(p.panel);
      else if (compact) after.push(p.panel);
      else element.append(p.panel);
    }
    if (compact) {
      large = makePanel(null, { cls: " nbvis-ah-large" });
      element.append(strip, large.panel, ...after);
    }
  }

  /** Which layer the dashboard draws large: the selected unit's, else the one drawn large before, else the first. */
  function largeEntry(sel) {
    const drawable = (name) => {
      const e = name != null && ctx.entryOf(name);
      return e && e.kind !== "bars" ? e : null;
    };
    return drawable(sel && sel[0]) || drawable(large.entry && large.entry.name) || ctx.layerEntries().find((e) => e.kind !== "bars") || null;
  }

  function drawPanel(p, values, labels, sel, position) {
    const { entry } = p;
    const units = entry.units;
    p.title.textContent = p.thumb ? entry.label : `${entry.label} \u00b7 ${layerCount(entry)}`;
    if (p.thumb) p.panel.title = `${entry.label} \u00b7 ${layerCount(entry)}: click a unit to select it and draw this layer large`;
    const selected = sel && sel[0] === entry.name ? shownUnit(entry, sel[1]) : -1; // where it is drawn
    if (entry.kind === "bars") {
      p.geometry = drawBars(p.canvas, values.data, entry.output ? labels : [], selected);
      p.scale = null;
      p.range.textContent = labels.length && p.geometry.best >= 0 ? `top: ${labels[p.geometry.best]}` : "";
      p.panel.dataset.best = String(p.geometry.best);
      p.canvas.dataset.layout = JSON.stringify(barLayout(p.geometry.units));
      return;
    }
    p.scale = scaleOf(values.data);
    p.geometry = layerGrid(entry, entry.kind === "conv" ? entry.shape[0] : values.data.length, p.width);
    const g = paintGrid(p.canvas, p.geometry, values.data, p.scale, p.geometry.shown);
    const shownNote = entry.kind === "conv" && units > MAX_MAPS ? ` \u00b7 first ${MAX_MAPS} of ${units} shown` : "";
    p.range.textContent = `scale ${fmt(p.scale.lo)} \u2026 ${fmt(p.scale.hi)}${shownNote}`;
    const outlined = p.geometry.kind === "folded" ? p.geometry.units : p.geometry.shown;
    if (selected >= 0 && selected < outlined) {
      outlineSelection(g, unitRect(p.geometry, selected));
      if (position && p.geometry.kind === "conv") outlineSelection(g, cellRect(p.geometry, selected, ...shownPosition(entry, ...position)));
    }
    publishLayout(p.canvas, p.geometry);
  }

  return {
    element,
    build,
    /** Draw every layer's current activation (and, compact, the large one). */
    draw() {
      const labels = ctx.labels();
      const sel = ctx.selectedUnit();
      const position = ctx.selectedPosition();
      for (const p of panels.values()) {
        const values = ctx.acts(p.entry.name);
        if (values) drawPanel(p, values, labels, sel, position);
      }
      if (!large) return;
      const entry = largeEntry(sel);
      large.entry = entry;
      const values = entry && ctx.acts(entry.name);
      large.panel.style.display = values ? "" : "none";
      if (!values) return;
      large.panel.dataset.layer = entry.label;
      large.panel.dataset.kind = entry.kind;
      drawPanel(large, values, labels, sel, position);
      for (const p of panels.values()) p.panel.classList.toggle("nbvis-ah-current", p.entry.name === entry.name);
    },
    /** The panel of layer `name` ({entry, geometry, scale, ...}), or undefined. */
    panel: (name) => panels.get(name),
    /** Compact: the panel drawn large (its entry: the layer shown), or null. */
    large: () => large,
  };
}
