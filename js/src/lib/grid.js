// Tile grids: `count` tiles of tileW x tileH native pixels laid out `cols` per row, drawn at an
// integer `zoom`. Pure layout maths (no DOM), shared by every view that draws tiles, and the
// `data-layout` contract the browser tests read (see ARCHITECTURE.md).

/** Columns for `count` tiles of tileW x tileH (pitch included) so the grid comes out near square. */
export function squareCols(count, pitchW = 1, pitchH = 1) {
  return Math.max(1, Math.ceil(Math.sqrt((count * pitchH) / pitchW)));
}

/**
 * A grid of tiles. Tile t's top-left native pixel is
 * (originX + (t % cols) * pitchW, originY + floor(t / cols) * pitchH); the border around the grid
 * is `origin` wide, so the native size is cols * pitchW + 2 * originX - (pitchW - tileW).
 */
export function tileGrid({ count, cols, tileW, tileH, pitchW = tileW, pitchH = tileH, originX = 0, originY = originX, zoom = 1 }) {
  const c = Math.max(1, cols);
  const rows = Math.ceil(count / c);
  return {
    count,
    cols: c,
    rows,
    tileW,
    tileH,
    pitchW,
    pitchH,
    originX,
    originY,
    zoom,
    nativeW: Math.max(1, c * pitchW + 2 * originX - (pitchW - tileW)),
    nativeH: Math.max(1, rows * pitchH + 2 * originY - (pitchH - tileH)),
  };
}

/** Native top-left pixel [x, y] of tile t. */
export function tileOrigin(grid, t) {
  return [grid.originX + (t % grid.cols) * grid.pitchW, grid.originY + Math.floor(t / grid.cols) * grid.pitchH];
}

/**
 * The tile under the canvas point (px, py) (canvas pixels, zoom included): {tile, x, y, inside}
 * with (x, y) the native pixel inside the tile (inside: within tileW x tileH), or null when the
 * point is off the grid's columns or past its last tile.
 */
export function tileAt(grid, px, py) {
  const nx = Math.floor(px / grid.zoom);
  const ny = Math.floor(py / grid.zoom);
  if (nx < 0 || ny < 0) return null;
  const col = Math.floor(nx / grid.pitchW);
  const row = Math.floor(ny / grid.pitchH);
  const tile = row * grid.cols + col;
  if (col >= grid.cols || tile >= grid.count) return null;
  const x = nx - col * grid.pitchW - grid.originX;
  const y = ny - row * grid.pitchH - grid.originY;
  return { tile, x, y, inside: x >= 0 && y >= 0 && x < grid.tileW && y < grid.tileH };
}

/** Canvas rectangle [x, y, w, h] of tile t with its border of `pad` native pixels around it. */
export function tileRect(grid, t, pad = grid.originX) {
  const [ox, oy] = tileOrigin(grid, t);
  const z = grid.zoom;
  return [(ox - pad) * z, (oy - pad) * z, (grid.tileW + 2 * pad) * z, (grid.tileH + 2 * pad) * z];
}

/** The grid as the `data-layout` contract: what a test needs to find tile t's pixel (row, col). */
export function layoutContract(grid) {
  return {
    count: grid.count,
    cols: grid.cols,
    rows: grid.rows,
    zoom: grid.zoom,
    tile: [grid.tileW, grid.tileH],
    pitch: [grid.pitchW, grid.pitchH],
    origin: [grid.originX, grid.originY],
  };
}

/** Publish a grid's layout on `element` as `data-layout` (JSON of layoutContract). */
export function publishLayout(element, grid) {
  element.dataset.layout = JSON.stringify(layoutContract(grid));
}

/**
 * The canvas point at the middle of pixel (row, col) of tile t, from a data-layout contract
 * (the middle of the tile when row/col are null): what a browser test computes to hover there.
 */
export function layoutPoint(layout, t, row = null, col = null) {
  const [tileW, tileH] = layout.tile;
  const [pitchW, pitchH] = layout.pitch;
  const [originX, originY] = layout.origin;
  const x = originX + (t % layout.cols) * pitchW + (col == null ? tileW / 2 : col + 0.5);
  const y = originY + Math.floor(t / layout.cols) * pitchH + (row == null ? tileH / 2 : row + 0.5);
  return [x * layout.zoom, y * layout.zoom];
}
