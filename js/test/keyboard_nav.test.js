// Keyboard navigation of the heatmap's selection, and what each layer's header says.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nextSelection } from "../src/heatmap/keyboard_nav.js";
import { layerCount } from "../src/heatmap/layer_panels.js";
import { layerGrid, unitAt, unitRect } from "../src/heatmap/geometry.js";
import { layoutContract, layoutPoint } from "../src/lib/grid.js";

const entries = [
  { name: "conv1", kind: "conv", units: 8 },
  { name: "fc1", kind: "dense", units: 100 },
  { name: "fc2", kind: "bars", units: 10 },
];
const cols = { conv1: 3, fc1: 10 };
const move = (key, current) => nextSelection(key, current, entries, (name) => cols[name]);

test("arrow keys move the unit in its layer's grid, clamped at the edges", () => {
  assert.deepEqual(move("ArrowRight", ["fc1", 12]), ["fc1", 13]);
  assert.deepEqual(move("ArrowLeft", ["fc1", 0]), ["fc1", 0]);
  assert.deepEqual(move("ArrowDown", ["fc1", 12]), ["fc1", 22]);
  assert.deepEqual(move("ArrowUp", ["fc1", 5]), ["fc1", 5]); // no row above
  assert.deepEqual(move("ArrowDown", ["fc1", 95]), ["fc1", 95]); // no row below
  assert.deepEqual(move("ArrowDown", ["fc2", 3]), ["fc2", 4]); // bars go down one by one
  assert.deepEqual(move("End", ["conv1", 2]), ["conv1", 7]);
  assert.deepEqual(move("ArrowRight", null), ["conv1", 0]); // nothing selected: the first unit
});

test("PageUp / PageDown go to the previous / next layer with the unit index clamped", () => {
  assert.deepEqual(move("PageDown", ["conv1", 5]), ["fc1", 5]);
  assert.deepEqual(move("PageDown", ["fc1", 42]), ["fc2", 9]);
  assert.deepEqual(move("PageUp", ["fc1", 42]), ["conv1", 7]);
  assert.deepEqual(move("PageUp", ["conv1", 3]), ["conv1", 3]);
  assert.deepEqual(move("PageDown", ["conv1", [2, 3, 4]]), ["fc1", 2]); // a position: its channel
});

test("layer headers give each count once", () => {
  assert.equal(layerCount({ kind: "bars", units: 10, shape: [10] }), "10 units");
  assert.equal(layerCount({ kind: "dense", units: 100, shape: [100] }), "100 units");
  assert.equal(layerCount({ kind: "conv", units: 16, shape: [16, 14, 14] }), "16 channels of 14\u00d714");
  assert.equal(layerCount({ kind: "conv", units: 64, shape: [64, 56, 56], pooled: 4 }),
    "64 channels of 56\u00d756, averaged 4\u00d74 to fit the view");
  assert.equal(layerCount({ kind: "dense", units: 784, shape: [784], fold: [16, 7, 7] }), "784 units (16 maps of 7\u00d77)");
});

test("a flattened conv map is drawn as its maps; a point gives the flat unit index", () => {
  const entry = { kind: "dense", units: 784, shape: [784], fold: [16, 7, 7] };
  const g = layerGrid(entry, 784);
  assert.equal(g.kind, "folded");
  assert.deepEqual([g.count, g.cols, g.mh, g.mw], [16, 4, 7, 7]);
  const [px, py] = layoutPoint(layoutContract(g), 5, 3, 2);
  assert.deepEqual(unitAt(g, px, py), { unit: 5 * 49 + 3 * 7 + 2, channel: 5, y: 3, x: 2, flat: 5 * 49 + 3 * 7 + 2 });
  const [x, y, w] = unitRect(g, 5 * 49 + 3 * 7 + 2);
  assert.equal(w, 3 * g.zoom);
  assert.ok(Math.abs(x + w / 2 - px) <= g.zoom && Math.abs(y + w / 2 - py) <= g.zoom);
});

test("the arrow keys move one drawn cell in a dense layer sent in runs of units", () => {
  // 4 000 000 units in runs of 8, drawn 700 cells a row: one cell is 8 units, one row 5600
  const big = [{ name: "fc", kind: "dense", units: 4_000_000, shape: [500_000], pooled: 8 }];
  const go = (key, current) => nextSelection(key, current, big, () => 700);
  assert.deepEqual(go("ArrowRight", ["fc", 16]), ["fc", 24]);
  assert.deepEqual(go("ArrowLeft", ["fc", 16]), ["fc", 8]);
  assert.deepEqual(go("ArrowDown", ["fc", 16]), ["fc", 16 + 5600]);
  assert.deepEqual(go("ArrowUp", ["fc", 5616]), ["fc", 16]);
  assert.deepEqual(go("End", ["fc", 16]), ["fc", 3_999_999]);
});
