// ActivationHeatmap layout maths (pure): how big each layer, the input and the output bars are
// drawn, which unit is under a point, and which input pixels a conv position sees.
import { squareCols, tileAt, tileGrid, tileOrigin, tileRect } from "../lib/grid.js";

export const LAYER_WIDTH = 420; // CSS px available to one layer's canvas
export const LARGE_WIDTH = 300; // the dashboard's selected layer, drawn large
export const THUMB_WIDTH = 64; // the dashboard's other layers, as thumbnails
export const INPUT_WIDTH = 224; // CSS px of the input (and the why map, the enlarged channel)
export const MAX_MAPS = 256; // channel maps drawn per conv layer
export const BAR_ROW = 16; // px per output bar
export const BAR_WIDTH = 300;

/**
 * The grid a layer is drawn as: a conv layer's channels as tiles of their maps (the first
 * MAX_MAPS), a dense layer's `units` as a near-square grid of pixels, about `width` CSS px wide
 * (never below one pixel per value). Returns a lib/grid.js grid with {kind, units, shown, mh, mw} added.
 */
export function layerGrid(entry, units, width = LAYER_WIDTH) {
  if (entry.kind === "conv") {
    const [mh, mw] = entry.maps;
    const shown = Math.min(units, MAX_MAPS);
    const cols = squareCols(shown, mw + 1, mh + 1);
    const grid = tileGrid({ count: shown, cols, tileW: mw, tileH: mh, pitchW: mw + 1, pitchH: mh + 1, originX: 1 });
    grid.zoom = Math.max(1, Math.min(8, Math.floor(width / grid.nativeW)));
    return { ...grid, kind: "conv", units, shown, mh, mw };
  }
  if (entry.fold) {
    // a dense layer that is a conv map flattened (nn.Flatten after (C, H, W)): its C maps side
    // by side, as the conv layer before it; a unit is still one flat index c * H * W + y * W + x
    const [c, mh, mw] = entry.fold;
    const cols = squareCols(c, mw + 1, mh + 1);
    const grid = tileGrid({ count: c, cols, tileW: mw, tileH: mh, pitchW: mw + 1, pitchH: mh + 1, originX: 1 });
    grid.zoom = Math.max(1, Math.min(8, Math.floor(width / grid.nativeW)));
    return { ...grid, kind: "folded", units, shown: c, mh, mw };
  }
  const cols = squareCols(units);
  const zoom = Math.max(width < 100 ? 1 : 2, Math.min(24, Math.floor(Math.min(width, 260) / cols)));
  return { ...tileGrid({ count: units, cols, tileW: 1, tileH: 1, zoom }), kind: "dense", units, shown: units };
}

/** The canvas rectangle that outlines unit `unit` of a layerGrid: its tile, or its pixel in a folded layer. */
export function unitRect(g, unit) {
  if (g.kind !== "folded") return tileRect(g, unit);
  const size = g.mh * g.mw;
  return cellRect(g, Math.floor(unit / size), Math.floor((unit % size) / g.mw), unit % g.mw);
}

/** The canvas rectangle that outlines pixel (y, x) of tile `tile` (one position of a channel map). */
export function cellRect(g, tile, y, x) {
  const [ox, oy] = tileOrigin(g, tile);
  return [(ox + x - 1) * g.zoom, (oy + y - 1) * g.zoom, 3 * g.zoom, 3 * g.zoom];
}

/** The unit (and position, for conv) of a layerGrid under the canvas point (px, py): {unit, y, x, flat} or null. */
export function unitAt(g, px, py) {
  const hit = tileAt(g, px, py);
  if (!hit || !hit.inside) return null;
  const flat = hit.tile * g.mh * g.mw + hit.y * g.mw + hit.x;
  if (g.kind === "conv") return { unit: hit.tile, y: hit.y, x: hit.x, flat };
  if (g.kind === "folded") return { unit: flat, channel: hit.tile, y: hit.y, x: hit.x, flat };
  return { unit: hit.tile, flat: hit.tile };
}

/**
 * The unit (flat index) that a hit on layer `entry` stands for. A dense layer sent in runs of
 * `entry.pooled` units (too big for one message) draws one run per cell; a flattened conv map sent
 * averaged down draws one k x k block per cell: the hit stands for the first unit of its run or block.
 */
export function realUnit(entry, hit) {
  const k = entry.pooled || 1;
  if (k === 1 || entry.kind === "conv" || entry.kind === "bars") return hit.unit;
  if (entry.fold) {
    const [, hgt, wid] = entry.full;
    return hit.channel * hgt * wid + hit.y * k * wid + hit.x * k;
  }
  return hit.unit * k;
}

/** Where unit `unit` of layer `entry` is drawn: the index of its run or block in the values sent (see realUnit). */
export function shownUnit(entry, unit) {
  const k = entry.pooled || 1;
  if (k === 1 || entry.kind === "conv" || entry.kind === "bars") return unit;
  if (entry.fold) {
    const [, hgt, wid] = entry.full;
    const [, h, w] = entry.fold;
    const c = Math.floor(unit / (hgt * wid));
    const r = unit % (hgt * wid);
    return c * h * w + Math.floor(Math.floor(r / wid) / k) * w + Math.floor((r % wid) / k);
  }
  return Math.floor(unit / k);
}

/** The output bar under canvas row py, or null. */
export function barAt(units, py) {
  const i = Math.floor((py - 1) / BAR_ROW);
  return i >= 0 && i < units ? { unit: i, flat: i } : null;
}

/** The bars' layout in the data-layout contract: one BAR_ROW row per unit, below a 1 px margin. */
export function barLayout(units) {
  return { count: units, cols: 1, rows: units, zoom: 1, tile: [BAR_WIDTH, BAR_ROW], pitch: [BAR_WIDTH, BAR_ROW], origin: [0, 1] };
}

/** Zoom of an image of wid x hgt drawn INPUT_WIDTH wide (or `width`). */
export function imageZoom(wid, hgt, width = INPUT_WIDTH) {
  return Math.max(1, Math.floor(width / Math.max(wid, hgt)));
}

/** The pixel (x, y) of an image drawn at `zoom` under the canvas point, or null when outside. */
export function pixelAt(info, px, py) {
  const x = Math.floor(px / info.zoom);
  const y = Math.floor(py / info.zoom);
  return x < 0 || y < 0 || x >= info.wid || y >= info.hgt ? null : { x, y, flat: y * info.wid + x };
}

/**
 * The input rows and columns [[top, bottom), [left, right)] that position (y, x) of a conv layer
 * sees, from the layer's `field` ({lo, hi} per axis, or {whole: true}); null when not known. For
 * maps drawn averaged down `k` times (entry.pooled: (y, x) is a block of k x k positions) the
 * block's positions together; k = 1 for a position of the layer itself (a selected one).
 */
export function receptiveField(entry, y, x, k = entry.pooled || 1) {
  const f = entry.field;
  if (!f || f.whole || f.lo.length !== 2) return null;
  const span = (axis, i) => [f.lo[axis][i * k], f.hi[axis][Math.min(i * k + k, f.lo[axis].length) - 1]];
  return [span(0, y), span(1, x)];
}

/** Position (y, x) of a conv layer's maps as drawn (averaged down entry.pooled times: the block it is in). */
export function shownPosition(entry, y, x) {
  const k = entry.pooled || 1;
  return [Math.floor(y / k), Math.floor(x / k)];
}
