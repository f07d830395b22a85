// Number boxes and sliders that work inside a notebook.
//
// JupyterLab and Notebook 7 read keystrokes on the document (Enter edits a cell, the arrow keys
// move between cells, digits change cell types) and take the ones that match a shortcut: then
// Enter never applies a number box and ArrowUp never moves a slider. These controls keep their
// keystrokes: they stop them from bubbling out of the control (as ipywidgets' own controls do,
// enough where the application reads keys in the bubbling phase, as JupyterLab does), and carry
// lumino's `data-lm-suppress-shortcuts`, which makes the shortcut matcher skip them (Notebook 7
// reads keys in the capture phase, before the control sees them). Values are clamped to the
// control's range and rounded to its step, and the box shows the value that was applied.
import { h } from "./view.js";

const KEY_EVENTS = ["keydown", "keypress", "keyup"];

const read = (bound) => (typeof bound === "function" ? bound() : bound);

/** Keep the keystrokes typed into `element` away from the notebook's keyboard shortcuts. */
export function keepKeys(listen, element) {
  element.setAttribute("data-lm-suppress-shortcuts", "true");
  for (const type of KEY_EVENTS) listen(element, type, (event) => event.stopPropagation());
}

/**
 * `value` clamped to [min, max] and rounded to a multiple of `step` above `min` (no rounding for
 * step "any"); null when it is not a number.
 */
export function clampNumber(value, { min = -Infinity, max = Infinity, step = 1 } = {}) {
  let v = typeof value === "string" ? (value.trim() === "" ? NaN : Number(value)) : value;
  if (!Number.isFinite(v)) return null;
  if (step !== "any" && step > 0) {
    const base = Number.isFinite(min) ? min : 0;
    v = base + Math.round((v - base) / step) * step;
    if (Number.isInteger(step) && Number.isInteger(base)) v = Math.round(v);
  }
  if (max < min) max = min; // an empty range: the lowest value
  return Math.min(Math.max(v, min), max);
}

/**
 * A number box. Enter (or leaving the box, or its spin buttons) applies the typed value, clamped
 * to [min, max] and rounded to `step` (bounds may be functions, read at each use; `width` null
 * leaves the size to the `className`'s CSS); Escape puts the
 * current value back. `apply(value)` runs only when the value differs from `current()`.
 * Returns the <input>, with `show()` to display `current()` (skipped while the person types) and
 * `commit()`, which applies what is typed and says whether that changed the value.
 */
export function numberBox(listen, { current, apply, min = 0, max = Infinity, step = 1, width = "4.5em", className, title }) {
  const box = h("input", { type: "number", step });
  if (width) box.style.width = width;
  if (className) box.className = className;
  if (title) box.title = title;
  const bounds = () => ({ min: read(min), max: read(max), step });
  const showBounds = () => {
    const { min: lo, max: hi } = bounds();
    if (Number.isFinite(lo)) box.min = String(lo);
    if (Number.isFinite(hi)) box.max = String(Math.max(lo, hi));
  };
  const show = (force = false) => {
    showBounds();
    if (force || document.activeElement !== box) box.value = String(current());
  };
  const commit = () => {
    const value = clampNumber(box.value, bounds());
    if (value === null) {
      show(true);
      return false;
    }
    box.value = String(value);
    if (value === current()) return false;
    apply(value);
    return true;
  };
  keepKeys(listen, box);
  listen(box, "keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      commit();
    } else if (event.key === "Escape") {
      show(true);
    }
  });
  listen(box, "change", commit);
  box.show = show;
  box.commit = commit;
  show(true);
  return box;
}

/**
 * A range slider. The arrow keys, PageUp/PageDown and Home/End move it (as in any browser), and
 * each move while dragging calls `preview(value)`; the released or keyed value, clamped, goes to
 * `apply(value)` when it differs from `current()`. Returns the <input>, with `show()` to put it
 * at `current()`.
 */
export function slider(listen, { current, apply, preview, min = 0, max = 1, step = 1, width = "110px", className, title }) {
  const input = h("input", { type: "range", step });
  if (width) input.style.width = width;
  if (className) input.className = className;
  if (title) input.title = title;
  const bounds = () => ({ min: read(min), max: read(max), step });
  const show = () => {
    const { min: lo, max: hi } = bounds();
    input.min = String(lo);
    input.max = String(Math.max(lo, hi));
    input.value = String(current());
  };
  keepKeys(listen, input);
  if (preview) listen(input, "input", () => preview(clampNumber(input.value, bounds())));
  listen(input, "change", () => {
    const value = clampNumber(input.value, bounds());
    if (value !== null && value !== current()) apply(value);
  });
  input.show = show;
  show();
  return input;
}
