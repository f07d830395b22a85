// The enlarged channel: the conv channel under the pointer (else the selected one) drawn at the
// input's size, in its layer's scale. Hovering a position outlines what it sees on the input; a
// click selects that one position, [layer, [c, y, x]], whose own why map and top examples follow.
import { fmt, lutIndex, setPixel } from "../lib/colormap.js";
import { blit, outlineSelection } from "../lib/draw.js";
import { canvasPoint } from "../lib/pointer.js";
import { h, setTraits } from "../lib/view.js";
import { imageZoom, pixelAt, receptiveField, shownPosition } from "./geometry.js";
import { inputPlace } from "./tooltips.js";

/**
 * {element, draw(), show(target)}: target {name, unit} of the hovered channel, or null.
 * `onField(field)` runs while the pointer is over a position (field: the input pixels it sees, or
 * null), `onLeave()` when it leaves. `width`: CSS px of the enlarged map.
 */
export function zoomPanel(ctx, layers, { onField = () => {}, onLeave = () => {}, width } = {}) {
  const { model, view } = ctx;
  const canvas = h("canvas", { class: "nbvis-ah-zoom" });
  const caption = h("span", { class: "nbvis-muted" });
  const element = h("div", { class: "nbvis-ah-panel nbvis-ah-zoompanel" }, [caption, canvas]);
  let hovered = null;
  let drawn = null; // {name, unit, entry, zoom, mh, mw} of the map on the canvas

  function target() {
    if (hovered) return hovered;
    const sel = ctx.selectedUnit();
    const p = sel && layers.panel(sel[0]);
    return p && p.entry.kind === "conv" ? { name: sel[0], unit: sel[1] } : null;
  }

  function draw() {
    const t = target();
    const p = t && layers.panel(t.name);
    const values = p && ctx.acts(t.name);
    if (!p || !values || p.entry.kind !== "conv" || !p.scale) {
      element.style.display = "none";
      drawn = null;
      return;
    }
    element.style.display = "";
    const [mh, mw] = p.entry.maps;
    const size = mh * mw;
    const plane = values.data.subarray(t.unit * size, (t.unit + 1) * size);
    const image = new ImageData(mw, mh);
    for (let i = 0; i < size; i++) setPixel(image, i, p.scale.table, lutIndex(plane[i], p.scale.lo, p.scale.hi));
    const zoom = imageZoom(mw, mh, width);
    const g = blit(canvas, image, zoom);
    drawn = { name: t.name, unit: t.unit, entry: p.entry, zoom, mh, mw, plane };
    const sel = ctx.selectedUnit();
    const position = ctx.selectedPosition();
    if (position && sel && sel[0] === t.name && sel[1] === t.unit) {
      const [y, x] = shownPosition(p.entry, ...position);
      outlineSelection(g, [(x - 1) * zoom, (y - 1) * zoom, 3 * zoom, 3 * zoom]);
    }
    caption.textContent = `${p.entry.label} \u00b7 channel ${t.unit} (enlarged): click a position to select it`;
    element.dataset.unit = `${t.name}:${t.unit}`;
    canvas.dataset.zoom = String(zoom);
  }

  function positionAt(event) {
    if (!drawn) return null;
    const [px, py] = canvasPoint(canvas, event);
    return pixelAt({ zoom: drawn.zoom, wid: drawn.mw, hgt: drawn.mh }, px, py);
  }

  view.listen(canvas, "mousemove", (event) => {
    const p = positionAt(event);
    if (!p) {
      view.tooltip.hide();
      return onField(null);
    }
    const field = receptiveField(drawn.entry, p.y, p.x);
    onField(field);
    const sees = field ? `\nsees input rows ${field[0][0]}..${field[0][1] - 1}, columns ${field[1][0]}..${field[1][1] - 1}` : "";
    const k = drawn.entry.pooled;
    const where = k ? `${drawn.entry.label}[${drawn.unit}] ${inputPlace(p, k).replace("rows", "positions rows")}` : `${drawn.entry.label}[${drawn.unit}, ${p.y}, ${p.x}]`;
    view.tooltip.show(`${where}\nvalue ${fmt(drawn.plane[p.flat])}${sees}\nclick: select this position${k ? " (the block's first)" : ""}`, event);
  });
  view.listen(canvas, "mouseleave", () => {
    view.tooltip.hide();
    onLeave();
  });
  view.listen(canvas, "click", (event) => {
    const p = positionAt(event);
    const k = drawn && (drawn.entry.pooled || 1);
    if (p) setTraits(model, { selected: [drawn.name, [drawn.unit, p.y * k, p.x * k]] });
  });

  return {
    element,
    canvas,
    draw,
    /** Enlarge the hovered channel `t` ({name, unit}), or go back to the selected one for null. */
    show(t) {
      const same = t && hovered && t.name === hovered.name && t.unit === hovered.unit;
      if (same || (!t && !hovered)) return;
      hovered = t;
      draw();
    },
  };
}
