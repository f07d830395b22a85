// The selected unit's top dataset examples (the patch under its receptive field), scanned in the
// kernel's background with progress, cancel and rescan; click an example to make it the input.
import { decode } from "../lib/arrays.js";
import { fmt, imageRange } from "../lib/colormap.js";
import { drawImage } from "../lib/draw.js";
import { command, h, setTraits } from "../lib/view.js";
import { imageZoom } from "./geometry.js";

const EXAMPLE_WIDTH = 56; // CSS px of one example

/** {element, draw()}: shown when the view has a dataset. */
export function topExamples(ctx) {
  const { model, view } = ctx;
  const title = h("span", { class: "nbvis-ah-title" });
  const progress = h("progress", { max: 1, value: 0 });
  const cancelButton = h("button", { textContent: "cancel" });
  const rescanButton = h("button", { textContent: "rescan" });
  const state = h("span", { class: "nbvis-muted" });
  const grid = h("div", { class: "nbvis-ah-top" });
  const element = h("div", { class: "nbvis-ah-panel nbvis-ah-toppanel" }, [
    h("div", { class: "nbvis-bar" }, [title, progress, cancelButton, rescanButton, state]), grid,
  ]);
  view.listen(cancelButton, "click", () => command(model, "cancel_top"));
  view.listen(rescanButton, "click", () => command(model, "scan_top"));
  let shown = undefined; // the _top value whose examples are on the page

  function figures(top) {
    const patches = decode(top.patches);
    const values = decode(top.values);
    const indices = decode(top.indices);
    const [k, c, ph, pw] = patches.shape.length === 4 ? patches.shape : [patches.shape[0], 1, 1, patches.data.length / patches.shape[0]];
    const range = imageRange(patches.data);
    const out = [];
    for (let i = 0; i < k; i++) {
      const canvas = h("canvas");
      const slice = patches.data.subarray(i * c * ph * pw, (i + 1) * c * ph * pw);
      drawImage(canvas, slice, [c === 3 ? 3 : 1, ph, pw], { range, zoom: imageZoom(pw, ph, EXAMPLE_WIDTH) });
      const figure = h("figure", { title: `dataset #${indices.data[i]}: click to use it as the input` }, [
        canvas, h("figcaption", { textContent: `#${indices.data[i]} \u00b7 ${fmt(values.data[i])}` }),
      ]);
      figure.addEventListener("click", () => setTraits(model, { index: indices.data[i] }));
      out.push(figure);
    }
    return out;
  }

  function draw() {
    const top = model.get("_top");
    const scan = model.get("top_state");
    element.style.display = model.get("dataset_size") > 0 ? "" : "none";
    progress.value = model.get("top_progress");
    state.textContent = scan;
    element.dataset.state = scan;
    cancelButton.disabled = scan !== "running";
    const sel = ctx.selected();
    rescanButton.disabled = !sel;
    if (top === shown) return; // the examples did not change: keep their canvases
    shown = top;
    if (!top || !top.patches) {
      title.textContent = sel ? "top examples" : "top examples: click a unit";
      grid.replaceChildren();
      return;
    }
    const label = top.layer === "" ? "output" : top.layer;
    title.textContent = `top examples for ${label}[${top.unit}] \u00b7 ${top.scanned} scanned`;
    const list = figures(top);
    grid.replaceChildren(...list);
    element.dataset.count = String(list.length);
  }

  return { element, draw };
}
