// The enlarged channel: the conv channel under the pointer (else the selected one) drawn at the
// input's size, in its layer's scale.
import { lutIndex, setPixel } from "../lib/colormap.js";
import { blit } from "../lib/draw.js";
import { h } from "../lib/view.js";
import { imageZoom } from "./geometry.js";

/** {element, draw(), show(target)}: target {name, unit} of the hovered channel, or null. */
export function zoomPanel(ctx, layers) {
  const canvas = h("canvas", { class: "nbvis-ah-zoom" });
  const caption = h("span", { class: "nbvis-muted" });
  const element = h("div", { class: "nbvis-ah-panel" }, [caption, canvas]);
  let hovered = null;

  function target() {
    if (hovered) return hovered;
    const sel = ctx.selected();
    const p = sel && layers.panel(sel[0]);
    return p && p.entry.kind === "conv" ? { name: sel[0], unit: sel[1] } : null;
  }

  function draw() {
    const t = target();
    const p = t && layers.panel(t.name);
    const values = p && ctx.acts(t.name);
    if (!p || !values || p.entry.kind !== "conv") {
      element.style.display = "none";
      return;
    }
    element.style.display = "";
    const [mh, mw] = p.entry.maps;
    const size = mh * mw;
    const plane = values.data.subarray(t.unit * size, (t.unit + 1) * size);
    const image = new ImageData(mw, mh);
    for (let i = 0; i < size; i++) setPixel(image, i, p.scale.table, lutIndex(plane[i], p.scale.lo, p.scale.hi));
    blit(canvas, image, imageZoom(mw, mh));
    caption.textContent = `${p.entry.label} \u00b7 channel ${t.unit} (enlarged)`;
    element.dataset.unit = `${t.name}:${t.unit}`;
  }

  return {
    element,
    draw,
    /** Enlarge the hovered channel `t` ({name, unit}), or go back to the selected one for null. */
    show(t) {
      const same = t && hovered && t.name === hovered.name && t.unit === hovered.unit;
      if (same) return;
      hovered = t;
      draw();
    },
  };
}
