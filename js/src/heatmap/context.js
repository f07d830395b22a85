// What every part of the ActivationHeatmap reads: the decoded traits (cached until they change),
// the layout entries the kernel sent, the selected unit, and the status line that shows failures.
import { arrayGetter, decode } from "../lib/arrays.js";
import { h } from "../lib/view.js";

/**
 * The shared reading side of one heatmap view: {model, view, input(), grad(), acts(name), layout(),
 * inputEntry(), entryOf(name), selected(), labels(), status, guard(fn)}.
 */
export function heatmapContext(model, view) {
  const decoded = new Map(); // layer name -> {packed, array}
  const layout = () => model.get("_layout") || [];
  const status = h("span", { class: "nbvis-muted nbvis-ah-status" });
  return {
    model,
    view,
    input: arrayGetter(model, "_input"),
    grad: arrayGetter(model, "_grad"),
    /** The decoded activation of layer `name`, or null. */
    acts(name) {
      const packed = (model.get("_acts") || {})[name];
      const cached = decoded.get(name);
      if (cached && cached.packed === packed) return cached.array;
      const array = decode(packed);
      decoded.set(name, { packed, array });
      return array;
    },
    /** [input entry, layer entries...] as the kernel described them. */
    layout,
    inputEntry: () => layout()[0],
    layerEntries: () => layout().slice(1),
    entryOf: (name) => layout().find((e, i) => i > 0 && e.name === name),
    /** The selected [layer, unit], or null; unit is an index, or [c, y, x] for one position of a channel. */
    selected() {
      const s = model.get("selected");
      return Array.isArray(s) && s.length === 2 ? s : null;
    },
    /** The selected [layer, channel or unit index], a position counting as its channel; or null. */
    selectedUnit() {
      const s = this.selected();
      return s && [s[0], Array.isArray(s[1]) ? s[1][0] : s[1]];
    },
    /** The selected position [y, x] of a channel, or null when a whole unit is selected. */
    selectedPosition() {
      const s = this.selected();
      return s && Array.isArray(s[1]) && s[1].length === 3 ? [s[1][1], s[1][2]] : null;
    },
    labels: () => model.get("labels") || [],
    /** Whether the input is an image that can be drawn on. */
    drawable() {
      const entry = layout()[0];
      return !!(model.get("can_draw") && entry && entry.kind === "image");
    },
    status,
    /** Run a drawing step; a failure shows on the status line instead of breaking the view. */
    guard(fn) {
      try {
        fn();
      } catch (err) {
        status.textContent = `drawing failed: ${err}`;
        console.error(err);
      }
    },
  };
}
