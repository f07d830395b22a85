// Drawing on the input with the mouse (shift-drag or the right button erases): strokes go into a
// drawing buffer shown at once, and each stroke step is sent to the kernel (see sender.js).
import { imageRange } from "../lib/colormap.js";
import { canvasPoint } from "../lib/pointer.js";
import { h } from "../lib/view.js";

/** Fill `paint` (H*W) from a (c, H, W) input: its channel mean in its display range, clipped to 0..1. */
export function paintFromInput(data, [c, hgt, wid]) {
  const plane = hgt * wid;
  const [lo, hi] = imageRange(data);
  const paint = new Float32Array(plane);
  for (let p = 0; p < plane; p++) {
    let v = 0;
    for (let k = 0; k < c; k++) v += data[k * plane + p];
    v = (v / c - lo) / (hi - lo);
    paint[p] = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
  }
  return paint;
}

/** Ink a round brush of radius r (native px) at (cx, cy) into `paint` (hgt x wid), or erase it. */
export function stamp(paint, hgt, wid, cx, cy, r, erase) {
  for (let y = Math.max(0, Math.floor(cy - r - 1)); y <= Math.min(hgt - 1, Math.ceil(cy + r + 1)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r - 1)); x <= Math.min(wid - 1, Math.ceil(cx + r + 1)); x++) {
      const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
      const ink = Math.max(0, Math.min(1, r - d + 0.5));
      const p = y * wid + x;
      paint[p] = erase ? Math.min(paint[p], 1 - ink) : Math.max(paint[p], ink);
    }
  }
}

/**
 * The drawing tool on `input` (input_panel.js): {element (clear button and brush size), update(),
 * buffer(), active(), settle()}. buffer() is the drawing while the kernel has not caught up with it
 * (null otherwise); settle() drops it once nothing is drawn or sent any more.
 */
export function drawTool(ctx, input, sender) {
  const { model, view } = ctx;
  const { listen } = view;
  const clearButton = h("button", { textContent: "clear", title: "clear the drawing (draw on the input with the mouse; shift-drag erases)" });
  const brush = h("input", { type: "range", min: 0.5, max: 4, step: 0.25, value: 1.5, class: "nbvis-ah-brush", title: "brush size" });
  const element = h("span", {}, [clearButton, " ", h("label", {}, ["brush ", brush])]);
  const canvas = input.canvas;
  let paint = null; // H*W values in 0..1 while the person draws
  let drawing = false;
  let erase = false;
  let last = null;

  const shape = () => ctx.inputEntry().image;

  function sendPaint() {
    const bytes = new Uint8Array(paint.length);
    for (let p = 0; p < paint.length; p++) bytes[p] = Math.round(paint[p] * 255);
    const [, hgt, wid] = shape();
    sender.send("draw", [hgt, wid, 1], bytes);
  }

  function strokeTo(event) {
    const [px, py] = canvasPoint(canvas, event);
    const z = input.info().zoom;
    const point = [px / z, py / z];
    const from = last || point;
    const [, hgt, wid] = shape();
    const r = Number(brush.value) * Math.max(1, Math.min(hgt, wid) / 28);
    const steps = Math.max(1, Math.ceil(Math.hypot(point[0] - from[0], point[1] - from[1]) / 0.3));
    for (let i = 1; i <= steps; i++) {
      stamp(paint, hgt, wid, from[0] + ((point[0] - from[0]) * i) / steps, from[1] + ((point[1] - from[1]) * i) / steps, r, erase);
    }
    last = point;
    input.draw(paint);
    sendPaint();
  }

  listen(canvas, "pointerdown", (event) => {
    const info = input.info();
    if (!model.get("can_draw") || !info || info.kind !== "image") return;
    drawing = true;
    erase = event.shiftKey || event.button === 2;
    last = null;
    canvas.setPointerCapture(event.pointerId);
    view.tooltip.hide();
    if (!paint) paint = paintFromInput(ctx.input().data, shape()); // else: strokes the kernel has not answered yet are kept
    strokeTo(event);
  });
  listen(canvas, "pointermove", (event) => {
    if (drawing) strokeTo(event);
  });
  const endStroke = () => {
    drawing = false;
    last = null;
  };
  listen(canvas, "pointerup", endStroke);
  listen(canvas, "pointercancel", endStroke);
  listen(canvas, "contextmenu", (event) => event.preventDefault());
  listen(clearButton, "click", () => {
    const entry = ctx.inputEntry();
    if (!entry || entry.kind !== "image") return;
    const [, hgt, wid] = entry.image;
    paint = new Float32Array(hgt * wid);
    input.draw(paint);
    sendPaint();
  });

  return {
    element,
    /** Show the tool only where the input can be drawn on. */
    update() {
      const drawable = ctx.drawable();
      element.style.display = drawable ? "" : "none";
      canvas.classList.toggle("nbvis-ah-draw", drawable);
    },
    buffer: () => paint,
    active: () => drawing,
    /** The kernel has caught up with the drawing: show its input again. */
    settle() {
      if (!drawing && !sender.busy()) paint = null;
    },
  };
}
