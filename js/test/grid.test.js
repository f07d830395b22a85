// Tile-grid layout maths of lib/grid.js and the data-layout contract.
import assert from "node:assert/strict";
import { test } from "node:test";
import { layoutContract, layoutPoint, squareCols, tileAt, tileGrid, tileOrigin, tileRect } from "../src/lib/grid.js";

const conv = () => tileGrid({ count: 16, cols: 4, tileW: 14, tileH: 14, pitchW: 15, pitchH: 15, originX: 1, zoom: 6 });

test("squareCols makes a near-square grid", () => {
  assert.equal(squareCols(100), 10);
  assert.equal(squareCols(101), 11);
  assert.equal(squareCols(1), 1);
  assert.equal(squareCols(0), 1);
  assert.equal(squareCols(16, 15, 15), 4);
  assert.equal(squareCols(8, 4, 1), 2); // wide tiles: fewer columns
});

test("native size: tiles, the gaps between them and the border around", () => {
  const g = conv();
  assert.deepEqual([g.rows, g.nativeW, g.nativeH], [4, 4 * 15 + 1, 4 * 15 + 1]);
  const dense = tileGrid({ count: 100, cols: 10, tileW: 1, tileH: 1 });
  assert.deepEqual([dense.nativeW, dense.nativeH], [10, 10]);
  // weight-grid cells: a tile in a (tile + 2)-wide cell, so neighbours are 2 px apart
  const cells = tileGrid({ count: 25, cols: 5, tileW: 28, tileH: 28, pitchW: 30, pitchH: 30, originX: 1 });
  assert.deepEqual([cells.nativeW, cells.nativeH], [150, 150]);
  assert.deepEqual(tileOrigin(cells, 6), [31, 31]);
});

test("tileAt finds every pixel of every tile, and nothing past the last tile", () => {
  const g = tileGrid({ count: 7, cols: 3, tileW: 4, tileH: 3, pitchW: 5, pitchH: 4, originX: 1, zoom: 3 });
  for (let t = 0; t < 7; t++) {
    const [ox, oy] = tileOrigin(g, t);
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) {
        const hit = tileAt(g, (ox + x) * 3 + 1, (oy + y) * 3 + 2);
        assert.deepEqual(hit, { tile: t, x, y, inside: true });
      }
    }
    // the border pixel before the tile is on it but not inside it
    assert.equal(tileAt(g, (ox - 1) * 3, oy * 3).inside, false);
  }
  assert.equal(tileAt(g, 1 * 5 * 3 + 3, 2 * 4 * 3 + 3), null); // tile 7 does not exist
  assert.equal(tileAt(g, 3 * 5 * 3, 3), null); // right of the last column
  assert.equal(tileAt(g, -1, 2), null);
});

test("tileRect covers the tile and its border", () => {
  const g = conv();
  assert.deepEqual(tileRect(g, 5), [15 * 6, 15 * 6, 16 * 6, 16 * 6]);
  const dense = tileGrid({ count: 100, cols: 10, tileW: 1, tileH: 1, zoom: 24 });
  assert.deepEqual(tileRect(dense, 37), [7 * 24, 3 * 24, 24, 24]);
});

test("the data-layout contract leads back to the same tile and pixel", () => {
  for (const g of [conv(), tileGrid({ count: 100, cols: 10, tileW: 1, tileH: 1, zoom: 24 }),
    tileGrid({ count: 25, cols: 5, tileW: 28, tileH: 28, pitchW: 30, pitchH: 30, originX: 1, zoom: 2 })]) {
    const layout = JSON.parse(JSON.stringify(layoutContract(g)));
    for (let t = 0; t < g.count; t += 3) {
      const row = g.tileH - 1;
      const col = Math.floor(g.tileW / 2);
      assert.deepEqual(tileAt(g, ...layoutPoint(layout, t, row, col)), { tile: t, x: col, y: row, inside: true });
      assert.equal(tileAt(g, ...layoutPoint(layout, t)).tile, t);
    }
  }
});
