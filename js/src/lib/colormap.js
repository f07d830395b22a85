// Colormaps as 256-entry RGB lookup tables, the color scale of a set of values, and painting
// values into ImageData. Pure: no DOM beyond the ImageData it is handed. The stops live in
// nbvis/colormaps.json, shared with the static pictures drawn in Python.
import STOPS from "../../../nbvis/colormaps.json" with { type: "json" };
import { finiteRange } from "./arrays.js";

function lut(stops) {
  // stops: [[t, r, g, b], ...] with t in [0, 1]; linear interpolation.
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k++;
    const [t0, r0, g0, b0] = stops[k];
    const [t1, r1, g1, b1] = stops[k + 1];
    const f = t1 > t0 ? (t - t0) / (t1 - t0) : 0;
    table[i * 3] = r0 + f * (r1 - r0);
    table[i * 3 + 1] = g0 + f * (g1 - g0);
    table[i * 3 + 2] = b0 + f * (b1 - b0);
  }
  return table;
}

/** Diverging blue - white - red, centered at zero (ColorBrewer RdBu, reversed). */
export const DIVERGING = lut(STOPS.diverging);

/** Sequential dark - bright (magma-like) for activations. */
export const SEQUENTIAL = lut(STOPS.sequential);

/** Color of values that are NaN or infinite. */
export const BAD = STOPS.bad;

/** The LUT index of value v on the scale [lo, hi]; -1 for non-finite values. */
export function lutIndex(v, lo, hi) {
  if (!Number.isFinite(v)) return -1;
  const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}

/** Write one RGBA pixel of `image` (ImageData) at flat pixel index p. */
export function setPixel(image, p, table, index) {
  const o = p * 4;
  const px = image.data;
  if (index < 0) {
    px[o] = BAD[0];
    px[o + 1] = BAD[1];
    px[o + 2] = BAD[2];
  } else {
    px[o] = table[index * 3];
    px[o + 1] = table[index * 3 + 1];
    px[o + 2] = table[index * 3 + 2];
  }
  px[o + 3] = 255;
}

/** The color scale of a set of values: sequential from 0 when none is negative, else diverging around 0. */
export function scaleOf(data, diverging = false) {
  const [lo, hi] = finiteRange(data);
  if (!diverging && lo >= 0) return { table: SEQUENTIAL, lo: 0, hi: hi > 0 ? hi : 1 };
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  return { table: DIVERGING, lo: -m, hi: m };
}

/** Display range of an image: [0, 1] when every finite value lies there, else its own range. */
export function imageRange(data) {
  const [lo, hi] = finiteRange(data);
  return lo >= 0 && hi <= 1 ? [0, 1] : [lo, hi > lo ? hi : lo + 1];
}

/** A CSS linear-gradient for a colorbar of `table`. */
export function gradientCss(table) {
  const parts = [];
  for (let i = 0; i <= 8; i++) {
    const k = Math.round((i / 8) * 255);
    parts.push(`rgb(${table[k * 3]},${table[k * 3 + 1]},${table[k * 3 + 2]}) ${(i / 8) * 100}%`);
  }
  return `linear-gradient(to right, ${parts.join(", ")})`;
}

/** Format a number compactly for tooltips and legends. */
export function fmt(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(3);
  return v.toPrecision(4);
}
