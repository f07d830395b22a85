// The input panel: the current input as an image (or as a grid for non-image inputs, token ids as
// text), its caption, and an overlay that outlines the receptive field of the conv position under
// the pointer.
import { fmt, imageRange, scaleOf } from "../lib/colormap.js";
import { drawImage, drawTokens, paintGrid } from "../lib/draw.js";
import { publishLayout } from "../lib/grid.js";
import { canvasPoint, hoverTip } from "../lib/pointer.js";
import { themeColors } from "../lib/theme.js";
import { h } from "../lib/view.js";
import { INPUT_WIDTH, imageZoom, layerGrid, pixelAt, unitAt } from "./geometry.js";
import { inputTip } from "./tooltips.js";

const TOKEN_ROWS = 24; // rows of token ids drawn at most (a longer sequence ends in "+N")

/**
 * {element, canvas, draw(paint), outline(field), info()}. draw(paint) shows the input, or the
 * drawing buffer `paint` (H*W values in 0..1) while a drawing is under way. `busy()` says when the
 * pointer is drawing (no tooltip then).
 */
export function inputPanel(ctx, { busy, width }) {
  const { model, view } = ctx;
  const canvas = h("canvas", { class: "nbvis-ah-draw" });
  const overlay = h("canvas", { class: "nbvis-ah-overlay" });
  const caption = h("span", { class: "nbvis-muted" });
  const element = h("div", { class: "nbvis-ah-panel", "data-layer": "input" }, [
    h("span", { class: "nbvis-ah-title", textContent: "input" }), h("div", { class: "nbvis-ah-stack" }, [canvas, overlay]), caption,
  ]);
  let info = null; // how the input was drawn: an image {zoom, c, hgt, wid} or a layerGrid
  let field = null; // [[top, bottom), [left, right)] outlined on the input: what the hovered position sees
  let marked = null; // ... what the selected position sees, outlined while nothing is hovered

  function draw(paint = null) {
    const entry = ctx.inputEntry();
    const x = ctx.input();
    if (!entry || !x) return;
    // an input too big for one message comes averaged down: drawn (hovered, outlined) at that size
    const pooled = entry.pooled ? `shown averaged ${entry.pooled}\u00d7${entry.pooled} (${entry.full.join("\u00d7")}); drawing is off` : "";
    caption.textContent = [model.get("input_caption") || "", pooled].filter(Boolean).join(" \u00b7 ");
    if (entry.kind === "image") {
      const range = imageRange(x.data);
      const [, hgt, wid] = entry.image;
      info = { ...drawImage(canvas, paint || x.data, entry.image, { range: paint ? [0, 1] : range, zoom: imageZoom(wid, hgt, width) }), range };
      delete canvas.dataset.layout;
    } else if (entry.kind === "tokens") {
      info = drawTokens(canvas, x.data, width || INPUT_WIDTH, themeColors(canvas), TOKEN_ROWS);
      publishLayout(canvas, info);
    } else {
      const scale = scaleOf(x.data);
      info = { ...layerGrid({ kind: "dense" }, x.data.length), scale };
      paintGrid(canvas, info, x.data, scale);
      publishLayout(canvas, info);
    }
    overlay.width = canvas.width;
    overlay.height = canvas.height;
    drawOverlay();
  }

  function drawOverlay() {
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    const shown = field || marked;
    overlay.dataset.field = shown ? JSON.stringify(shown) : "";
    if (!shown || !info || info.kind !== "image") return;
    const [[top, bottom], [left, right]] = shown;
    const z = info.zoom / (ctx.inputEntry().pooled || 1); // the field is in input pixels; the image may be drawn averaged down
    g.strokeStyle = "#ff0";
    g.lineWidth = 2;
    g.strokeRect(left * z + 1, top * z + 1, (right - left) * z - 2, (bottom - top) * z - 2);
    g.strokeStyle = "#000";
    g.lineWidth = 1;
    g.strokeRect(left * z - 0.5, top * z - 0.5, (right - left) * z + 1, (bottom - top) * z + 1);
  }

  hoverTip(view.listen, view.tooltip, canvas, (event) => {
    const x = ctx.input();
    if (busy() || !x || !info) return null;
    const [px, py] = canvasPoint(canvas, event);
    if (info.kind === "image") {
      const p = pixelAt(info, px, py);
      const entry = ctx.inputEntry();
      return p && inputTip(info, x.data, p, entry.pooled, entry.full);
    }
    const hit = unitAt(info, px, py);
    if (hit && info.kind === "tokens") return hit.unit < info.shown ? `token ${hit.unit}\nid ${x.data[hit.unit]}` : `${info.units - info.shown} more tokens`;
    return hit && `input ${hit.unit}\nvalue ${fmt(x.data[hit.flat])}`;
  });

  return {
    element,
    canvas,
    draw,
    /** Outline `f` ([[top, bottom), [left, right)] of input pixels) on the input, or nothing for null. */
    outline(f) {
      field = f;
      drawOverlay();
    },
    /** Outline `f` while nothing is hovered: what the selected position sees (null: nothing). */
    mark(f) {
      marked = f;
      drawOverlay();
    },
    /** How the input is drawn now (null before the first draw). */
    info: () => info,
  };
}
