// Drawing onto canvases: native-resolution ImageData scaled up without smoothing, tile grids of
// values in a color scale, images (gray, RGB, or a colormap), and the selection outline.
import { BAD, lutIndex, setPixel } from "./colormap.js";
import { tileGrid, tileOrigin } from "./grid.js";

/** The color of the selection outline on every view. */
export const SELECTION = "#f90";

/** Put a native-resolution ImageData onto `canvas`, scaled by `zoom` without smoothing; returns its 2D context. */
export function blit(canvas, image, zoom) {
  const off = new OffscreenCanvas(image.width, image.height);
  off.getContext("2d").putImageData(image, 0, 0);
  canvas.width = image.width * zoom;
  canvas.height = image.height * zoom;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  return ctx;
}

/**
 * Paint the first `shown` tiles of `grid` (lib/grid.js) on `canvas`: tile t shows the plane
 * values[t * tileW * tileH ...] row by row, in the color `scale` ({table, lo, hi}). Returns the 2D context.
 */
export function paintGrid(canvas, grid, values, scale, shown = grid.count) {
  const image = new ImageData(grid.nativeW, grid.nativeH);
  const { tileW, tileH } = grid;
  const size = tileW * tileH;
  for (let t = 0; t < shown; t++) {
    const [ox, oy] = tileOrigin(grid, t);
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        setPixel(image, (oy + y) * grid.nativeW + ox + x, scale.table, lutIndex(values[t * size + y * tileW + x], scale.lo, scale.hi));
      }
    }
  }
  return blit(canvas, image, grid.zoom);
}

/**
 * Draw an image (C, H, W), C of 1 or 3, on `canvas` at `zoom`: gray/RGB with values in `range`, or
 * in a colormap `scale` (summing the channels when `sumChannels`). Returns {kind: "image", zoom, c, hgt, wid}.
 */
export function drawImage(canvas, data, [c, hgt, wid], { range = null, scale = null, zoom = 1, sumChannels = false } = {}) {
  const image = new ImageData(wid, hgt);
  const plane = hgt * wid;
  const [lo, hi] = range || [0, 1];
  for (let p = 0; p < plane; p++) {
    if (scale) {
      let v = data[p];
      if (sumChannels) for (let k = 1; k < c; k++) v += data[k * plane + p];
      setPixel(image, p, scale.table, lutIndex(v, scale.lo, scale.hi));
      continue;
    }
    const o = p * 4;
    let bad = false;
    for (let k = 0; k < 3; k++) {
      const v = data[(c === 3 ? k : 0) * plane + p];
      if (!Number.isFinite(v)) bad = true;
      image.data[o + k] = (255 * (v - lo)) / (hi - lo);
    }
    if (bad) {
      image.data[o] = BAD[0];
      image.data[o + 1] = BAD[1];
      image.data[o + 2] = BAD[2];
    }
    image.data[o + 3] = 255;
  }
  blit(canvas, image, zoom);
  return { kind: "image", zoom, c, hgt, wid };
}

/**
 * Draw token ids as text, one cell each, wrapped into rows about `width` CSS px wide (ids are
 * categories: their number, not a color), at most `maxRows` rows: a longer sequence ends in a
 * cell "+N" for the N ids not drawn. Returns a lib/grid.js grid (zoom 1) with {kind: "tokens",
 * units (ids), shown (ids drawn)}.
 */
export function drawTokens(canvas, ids, width, colors, maxRows = Infinity) {
  const n = ids.length;
  let digits = String(n).length + 1; // room for the "+N" cell
  for (let t = 0; t < n; t++) digits = Math.max(digits, String(Math.round(ids[t])).length);
  const tileW = 7 * digits + 8;
  const cols = Math.max(1, Math.min(n, Math.floor((width - 2) / (tileW + 2))));
  const cells = Math.min(n, cols * maxRows);
  const shown = cells < n ? cells - 1 : n;
  const grid = { ...tileGrid({ count: cells, cols, tileW, tileH: 16, pitchW: tileW + 2, pitchH: 18, originX: 1 }), kind: "tokens", units: n, shown };
  canvas.width = grid.nativeW;
  canvas.height = grid.nativeH;
  const ctx = canvas.getContext("2d");
  ctx.font = "11px monospace";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (let t = 0; t < cells; t++) {
    const [ox, oy] = tileOrigin(grid, t);
    ctx.fillStyle = colors.grid;
    ctx.fillRect(ox, oy, tileW, grid.tileH);
    ctx.fillStyle = t < shown ? colors.strong : colors.muted;
    ctx.fillText(t < shown ? String(Math.round(ids[t])) : `+${n - shown}`, ox + tileW / 2, oy + grid.tileH / 2 + 1);
  }
  return grid;
}

/** Outline the canvas rectangle [x, y, w, h] as the selection, inside its edge. */
export function outlineSelection(ctx, [x, y, w, hh]) {
  ctx.strokeStyle = SELECTION;
  ctx.lineWidth = 2;
  ctx.strokeRect(x + 1, y + 1, w - 2, hh - 2);
}
