// The selected unit's top dataset examples (the patch under its receptive field), scanned in the
// kernel's background with progress, cancel and rescan; click an example to make it the input.
// Beside the crops, as the Deep Visualization Toolbox shows them, each example's guided-backprop
// and deconvnet map (the gradient for a model without ReLUs): what in that patch makes it fire.
import { decode, sumPlanes } from "../lib/arrays.js";
import { fmt, imageRange, scaleOf } from "../lib/colormap.js";
import { drawImage, drawTokens } from "../lib/draw.js";
import { themeColors } from "../lib/theme.js";
import { command, h, setTraits } from "../lib/view.js";
import { imageZoom } from "./geometry.js";

const EXAMPLE_WIDTH = 56; // CSS px of one example
const COMPACT_WIDTH = 36; // ... in the Explorer's dashboard, three grids of 3 x 3 side by side
const TOKENS_WIDTH = 240; // CSS px of one example of token ids: a row of its ids, one example a line
const TOKEN_ROWS = 2; // ... in at most two rows (a longer example ends in "+N")
const MAPS = [["guided", "guided backprop"], ["deconvnet", "deconvnet"], ["gradient", "gradient"]];

/** The text above the examples: whose they are and, when it differs, what ranks them. */
export function topTitle(top) {
  const of = top.of || top.ranked_by;
  const ranked = top.ranked_by && top.ranked_by !== of ? `ranked by ${top.ranked_by}, its pre-activation` : "";
  return { title: `top examples for ${of} \u00b7 ${top.scanned} scanned`, ranked };
}

/** {element, draw()}: shown when the view has a dataset. `compact`: the dashboard's small grids. */
export function topExamples(ctx, { compact = false } = {}) {
  const { model, view } = ctx;
  const title = h("span", { class: "nbvis-ah-title" });
  const progress = h("progress", { max: 1, value: 0 });
  const cancelButton = h("button", { textContent: "cancel" });
  const rescanButton = h("button", { textContent: "rescan" });
  const state = h("span", { class: "nbvis-muted" });
  const ranked = h("div", { class: "nbvis-muted nbvis-ah-ranked" });
  const groups = h("div", { class: "nbvis-ah-topgroups" });
  const element = h("div", { class: "nbvis-ah-panel nbvis-ah-toppanel" }, [
    h("div", { class: "nbvis-bar" }, [title, progress, cancelButton, rescanButton, state]), ranked, groups,
  ]);
  view.listen(cancelButton, "click", () => command(model, "cancel_top"));
  view.listen(rescanButton, "click", () => command(model, "scan_top"));
  let shown = undefined; // the _top value whose examples are on the page
  const width = compact ? COMPACT_WIDTH : EXAMPLE_WIDTH;

  function group(label, kind, figures, tokens = false) {
    return h("div", { class: "nbvis-ah-topgroup", "data-maps": kind }, [
      h("span", { class: "nbvis-muted", textContent: label }),
      h("div", { class: tokens ? "nbvis-ah-top nbvis-ah-tokens" : "nbvis-ah-top" }, figures),
    ]);
  }

  function figures(top, indices, values) {
    const patches = decode(top.patches);
    const [k, c, ph, pw] = patches.shape.length === 4 ? patches.shape : [patches.shape[0], 1, 1, patches.data.length / patches.shape[0]];
    const range = imageRange(patches.data);
    const size = c * ph * pw;
    const tokens = ctx.inputEntry()?.kind === "tokens"; // token ids: their numbers
    const out = [];
    for (let i = 0; i < k; i++) {
      const canvas = h("canvas");
      const example = patches.data.subarray(i * size, (i + 1) * size);
      if (tokens) drawTokens(canvas, example, TOKENS_WIDTH, themeColors(element), TOKEN_ROWS);
      else drawImage(canvas, example, [c === 3 ? 3 : 1, ph, pw], { range, zoom: imageZoom(pw, ph, width) });
      const figure = h("figure", { title: `dataset #${indices[i]} \u00b7 ${top.ranked_by} ${fmt(values[i])}: click to use it as the input` }, [
        canvas, h("figcaption", { textContent: `#${indices[i]} \u00b7 ${fmt(values[i])}` }),
      ]);
      figure.addEventListener("click", () => setTraits(model, { index: indices[i] }));
      out.push(figure);
    }
    return { out, shape: [k, c, ph, pw], tokens };
  }

  /** Each example's map of `kind`, in a diverging scale of its own (as a crop has its own contrast). */
  function maps(top, kind, [k, c, ph, pw], indices) {
    const packed = decode(top[kind]);
    const size = c * ph * pw;
    const out = [];
    for (let i = 0; i < k; i++) {
      const slice = packed.data.subarray(i * size, (i + 1) * size);
      const rgb = c === 3;
      const scale = scaleOf(rgb ? sumPlanes(slice, 3) : slice, true);
      const canvas = h("canvas");
      drawImage(canvas, slice, [rgb ? 3 : 1, ph, pw], { scale, sumChannels: rgb, zoom: imageZoom(pw, ph, width) });
      const figure = h("figure", { title: `dataset #${indices[i]}: its ${kind} map, \u00b1${fmt(scale.hi)}` }, [canvas]);
      figure.addEventListener("click", () => setTraits(model, { index: indices[i] }));
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
      delete element.dataset.count;
      if (compact && sel && groups.childElementCount) {
        // the dashboard keeps the last examples' place, hidden, until the new unit's come
        groups.classList.add("nbvis-ah-stale");
        ranked.classList.add("nbvis-ah-stale");
        return;
      }
      ranked.textContent = "";
      groups.replaceChildren();
      return;
    }
    groups.classList.remove("nbvis-ah-stale");
    ranked.classList.remove("nbvis-ah-stale");
    const text = topTitle(top);
    title.textContent = text.title;
    ranked.textContent = text.ranked;
    const indices = decode(top.indices).data;
    const values = decode(top.values).data;
    const crops = figures(top, indices, values);
    const list = [group(crops.tokens ? "examples" : "crops", "crops", crops.out, crops.tokens)];
    for (const [kind, label] of MAPS) if (top[kind]) list.push(group(label, kind, maps(top, kind, crops.shape, indices)));
    groups.replaceChildren(...list);
    element.dataset.count = String(crops.out.length);
    element.dataset.maps = MAPS.filter(([kind]) => top[kind]).map(([kind]) => kind).join(" ");
  }

  return { element, draw };
}
