// Keyboard navigation of the selection, as in the Deep Visualization Toolbox: while the view has
// focus (click it, or Tab to it; in the Explorer, click any picture of it), the arrow keys move the selected unit in its layer's grid
// (left/right: the previous/next unit; up/down: one row of the grid; for the output bars, up and
// down are the previous and next bar), Home/End select the first/last unit, PageUp/PageDown the
// same unit index (clamped) in the previous/next layer.
//
// The keys are read on the window in the capture phase, before the notebook's own shortcuts
// (Notebook 7 reads keys in the capture phase on the document; ArrowUp there selects the cell
// above), and only while the focus is on the view itself: a number box or slider inside it keeps
// its keys, and every other key (Shift+Enter included) reaches the notebook as usual.
import { setTraits } from "../lib/view.js";

const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"]);

/** The selection after `key`, from the current one: [layer, unit], or null to do nothing. */
export function nextSelection(key, current, entries, columnsOf) {
  if (!entries.length) return null;
  let li = current ? entries.findIndex((e) => e.name === current[0]) : -1;
  let unit = current && Number.isInteger(current[1]) ? current[1] : Array.isArray(current?.[1]) ? current[1][0] : 0;
  if (li < 0) {
    li = 0;
    unit = 0;
    if (key !== "PageUp" && key !== "PageDown") return [entries[0].name, 0];
  }
  const entry = entries[li];
  const last = Math.max(0, entry.units - 1);
  // a dense layer drawn in runs of `pooled` units (too big for one message): a key moves one cell
  const step = entry.kind === "dense" && entry.pooled && !entry.fold ? entry.pooled : 1;
  const cols = entry.kind === "bars" ? 1 : Math.max(1, columnsOf(entry.name) || 1) * step;
  switch (key) {
    case "ArrowLeft":
      return [entry.name, Math.max(0, unit - step)];
    case "ArrowRight":
      return [entry.name, Math.min(last, unit + step)];
    case "ArrowUp":
      return [entry.name, unit - cols >= 0 ? unit - cols : unit];
    case "ArrowDown":
      return [entry.name, unit + cols <= last ? unit + cols : unit];
    case "Home":
      return [entry.name, 0];
    case "End":
      return [entry.name, last];
    case "PageUp":
    case "PageDown": {
      const to = entries[Math.min(entries.length - 1, Math.max(0, li + (key === "PageUp" ? -1 : 1)))];
      return [to.name, Math.min(unit, Math.max(0, to.units - 1))];
    }
    default:
      return null;
  }
}

/** Make the view focusable and move the selection with the keys while it has focus. */
export function keyboardNav(ctx, layers) {
  const { model, view } = ctx;
  const root = view.root;
  root.tabIndex = 0;
  root.classList.add("nbvis-focusable");
  root.title = root.title || "click here, then: arrow keys move the selected unit, PageUp/PageDown the layer";
  view.listen(
    window,
    "keydown",
    (event) => {
      if (!KEYS.has(event.key) || event.altKey || event.ctrlKey || event.metaKey) return;
      if (document.activeElement !== root) return; // a control inside the view keeps its keys
      const entries = ctx.layerEntries();
      const next = nextSelection(event.key, ctx.selected(), entries, (name) => layers.panel(name)?.geometry?.cols);
      event.preventDefault();
      event.stopPropagation();
      if (!next) return;
      const current = ctx.selected();
      if (current && current[0] === next[0] && current[1] === next[1]) return;
      setTraits(model, { selected: next });
    },
    true,
  );
  // a click on a unit selects it and leaves the focus on the view, ready for the keys; inside the
  // Explorer, so does a click on any of its pictures (a weight tile, a preferred input)
  view.listen(
    document,
    "mousedown",
    (event) => {
      if (!(event.target instanceof HTMLCanvasElement)) return;
      const scope = root.closest(".nbvis-explorer") || root;
      // after the browser's own focus change for this press (to the notebook cell around a canvas)
      if (scope.contains(event.target)) setTimeout(() => root.focus({ preventScroll: true }), 0);
    },
    true,
  );
}
