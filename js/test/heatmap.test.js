// The ActivationHeatmap's pure parts: layer layout, hit testing, receptive fields, tooltips, the
// drawing brush, the wrt choices and the input sender's one-request-in-flight rule.
import assert from "node:assert/strict";
import { test } from "node:test";
import { argmax } from "../src/heatmap/bars.js";
import { paintFromInput, stamp } from "../src/heatmap/draw_tool.js";
import { BAR_ROW, barAt, barLayout, imageZoom, layerGrid, pixelAt, realUnit, receptiveField, shownPosition, shownUnit, unitAt } from "../src/heatmap/geometry.js";
import { inputSender } from "../src/heatmap/sender.js";
import { gradTip, inputTip, layerTip } from "../src/heatmap/tooltips.js";
import { wrtOptions } from "../src/heatmap/why_panel.js";
import { layoutContract, layoutPoint } from "../src/lib/grid.js";

const convEntry = { kind: "conv", name: "conv2", label: "conv2", maps: [14, 14], shape: [16, 14, 14], units: 16 };

test("a dense layer of 100 units is a 10 x 10 grid; a conv layer of 16 maps 4 x 4 tiles", () => {
  const dense = layerGrid({ kind: "dense" }, 100);
  assert.deepEqual([dense.cols, dense.rows, dense.zoom, dense.nativeW], [10, 10, 24, 10]);
  const conv = layerGrid(convEntry, 16);
  assert.deepEqual([conv.cols, conv.mh, conv.mw, conv.nativeW, conv.zoom], [4, 14, 14, 61, 6]);
  // at most 256 maps are drawn
  const wide = layerGrid({ ...convEntry, maps: [2, 2] }, 1000);
  assert.deepEqual([wide.units, wide.shown, wide.count], [1000, 256, 256]);
});

test("unitAt gives the unit and its flat index in the activation", () => {
  const conv = layerGrid(convEntry, 16);
  const [px, py] = layoutPoint(layoutContract(conv), 5, 3, 9);
  assert.deepEqual(unitAt(conv, px, py), { unit: 5, y: 3, x: 9, flat: 5 * 196 + 3 * 14 + 9 });
  assert.equal(unitAt(conv, 0, 0), null); // the border
  const dense = layerGrid({ kind: "dense" }, 95);
  assert.deepEqual(unitAt(dense, ...layoutPoint(layoutContract(dense), 37)), { unit: 37, flat: 37 });
  assert.equal(unitAt(dense, 9.5 * 24, 9.5 * 24), null); // unit 99 of 95
});

test("bars: one row per unit under a 1 px margin, as the layout contract says", () => {
  assert.deepEqual(barAt(10, 1), { unit: 0, flat: 0 });
  assert.deepEqual(barAt(10, 1 + 3 * BAR_ROW + 5), { unit: 3, flat: 3 });
  assert.equal(barAt(10, 1 + 10 * BAR_ROW), null);
  const [, y] = layoutPoint(barLayout(10), 7);
  assert.equal(barAt(10, y).unit, 7);
  assert.equal(argmax(new Float32Array([1, NaN, 3, 2])), 2);
  assert.equal(argmax(new Float32Array([NaN])), -1);
});

test("images: zoom to the input width and pixel under a point", () => {
  assert.equal(imageZoom(28, 28), 8);
  assert.equal(imageZoom(500, 300), 1);
  assert.equal(imageZoom(14, 7, 56), 4);
  const info = { zoom: 8, wid: 28, hgt: 28 };
  assert.deepEqual(pixelAt(info, 8 * 20 + 3, 8 * 10 + 7), { x: 20, y: 10, flat: 10 * 28 + 20 });
  assert.equal(pixelAt(info, 8 * 28, 0), null);
});

test("receptiveField reads the rows and columns a position sees", () => {
  const field = { lo: [[0, 2, 4], [0, 1, 2]], hi: [[3, 6, 8], [2, 4, 5]] };
  assert.deepEqual(receptiveField({ field }, 1, 2), [[2, 6], [2, 5]]);
  assert.equal(receptiveField({ field: { whole: true } }, 0, 0), null);
  assert.equal(receptiveField({}, 0, 0), null);
});

test("tooltips name the layer, unit and value", () => {
  const values = new Float32Array(16 * 196);
  values[5 * 196 + 3 * 14 + 9] = 0.5;
  const hit = { unit: 5, y: 3, x: 9, flat: 5 * 196 + 3 * 14 + 9 };
  assert.equal(layerTip(convEntry, hit, values, [], [[2, 12], [14, 24]]),
    "conv2 \u00b7 channel 5 \u00b7 position (3, 9)\nvalue 0.5000\nsees input rows 2\u201311, cols 14\u201323");
  const out = { kind: "bars", label: "fc2", output: true, shape: [2] };
  const logits = new Float32Array([0, Math.log(3)]);
  assert.equal(layerTip(out, { unit: 1, flat: 1 }, logits, ["cat", "dog"]), "fc2 \u00b7 unit 1 (dog)\nvalue 1.099\nsoftmax 0.7500");
  const rgb = { kind: "image", c: 3, hgt: 1, wid: 2 };
  assert.equal(inputTip(rgb, new Float32Array([1, 2, 3, 4, 5, 6]), { x: 1, y: 0, flat: 1 }), "input (0, 1)\nR 2.000 G 4.000 B 6.000");
  assert.equal(gradTip({ kind: "image", c: 1, hgt: 1, wid: 2 }, new Float32Array([7, 8]), { x: 0, y: 0, flat: 0 }), "(0, 0)\n7.000");
  assert.equal(gradTip({ kind: "dense" }, new Float32Array([7, 8]), { unit: 1, flat: 1 }), "unit 1\n8.000");
});

test("the brush inks a disc and erases it again; a drawing starts from the input", () => {
  const paint = new Float32Array(10 * 10);
  stamp(paint, 10, 10, 5, 5, 1.5, false);
  assert.equal(paint[5 * 10 + 5], 1);
  assert.equal(paint[0], 0);
  const inked = paint.reduce((a, b) => a + b, 0);
  assert.ok(inked > 5 && inked < 12, inked); // about pi r^2
  stamp(paint, 10, 10, 5, 5, 1.5, true);
  assert.ok(paint.every((v) => v < 0.5));
  const start = paintFromInput(new Float32Array([0, 0.5, 1, 2]), [1, 2, 2]);
  assert.deepEqual(Array.from(start), [0, 0.25, 0.5, 1]);
});

test("gradients are taken over the input or a layer before the selected one", () => {
  const entries = [{ name: "a", label: "A" }, { name: "b", label: "B" }, { name: "c", label: "C" }];
  assert.deepEqual(wrtOptions(entries, ["c", 0]), [["input", "the input"], ["a", "A"], ["b", "B"]]);
  assert.deepEqual(wrtOptions(entries, null), [["input", "the input"]]);
});

test("the sender keeps one request in flight and only the latest waiting one", () => {
  const sent = [];
  const state = { _seq_done: 0 };
  const model = { get: (k) => state[k], send: (msg) => sent.push(msg) };
  const sender = inputSender(model, { stats: { roundTrip() {} } });
  const bytes = new Uint8Array([1]);
  sender.send("draw", [1, 1, 1], bytes);
  sender.send("draw", [1, 1, 1], bytes, { n: 2 });
  sender.send("draw", [1, 1, 1], bytes, { n: 3 });
  assert.equal(sent.length, 1);
  const first = sent[0].seq;
  assert.ok(sender.busy() && sender.inflight());
  state._seq_done = first;
  sender.ack();
  assert.deepEqual(sent.map((m) => [m.seq, m.n]), [[first, undefined], [first + 1, 3]]); // the middle one was dropped
  sender.send("upload", [], bytes, { name: "x.png" }, { force: true });
  assert.deepEqual(sent.map((m) => m.seq), [first, first + 1, first + 2]);
  state._seq_done = first + 2;
  sender.ack();
  assert.ok(!sender.busy());
});

test("two views of one widget: one view's answer does not release the other", () => {
  const sent = [];
  const state = { _seq_done: 0 };
  const model = { get: (k) => state[k], send: (msg) => sent.push(msg) };
  const a = inputSender(model, { stats: { roundTrip() {} } });
  const b = inputSender(model, { stats: { roundTrip() {} } });
  const bytes = new Uint8Array([1]);
  a.send("webcam", [1, 1, 4], bytes);
  b.send("draw", [1, 1, 1], bytes);
  const [seqA, seqB] = sent.map((m) => m.seq);
  assert.notEqual(seqA, seqB);
  state._seq_done = seqA;
  a.ack();
  b.ack();
  assert.ok(!a.inflight() && b.inflight());
  state._seq_done = seqB;
  b.ack();
  assert.ok(!b.inflight());
});

test("a layer or input sent averaged down maps hits to the units and input pixels they stand for", () => {
  // a dense layer of 10 units sent in runs of 4: cells 0..2 stand for units 0-3, 4-7, 8-9
  const dense = { name: "fc", label: "fc", kind: "dense", units: 10, shape: [3], pooled: 4 };
  assert.equal(realUnit(dense, { unit: 2, flat: 2 }), 8);
  assert.equal(shownUnit(dense, 7), 1);
  assert.equal(layerTip(dense, { unit: 2, flat: 2 }, new Float32Array([1, 2, 3]), [], null, 8), "fc \u00b7 units 8\u20139 (mean of 4)\nvalue 3.000");
  // a flatten of 2 maps of 4 x 4 sent as 2 maps of 2 x 2: cell (map 1, y 1, x 0) is block rows 2-3, cols 0-1
  const folded = { name: "flat", label: "flat", kind: "dense", units: 32, shape: [32], fold: [2, 2, 2], full: [2, 4, 4], pooled: 2 };
  const hit = { unit: 6, channel: 1, y: 1, x: 0, flat: 6 };
  assert.equal(realUnit(folded, hit), 16 + 2 * 4);
  for (let unit = 0; unit < 32; unit++) {
    const c = Math.floor(unit / 16), y = Math.floor((unit % 16) / 4), x = unit % 4;
    assert.equal(shownUnit(folded, unit), c * 4 + Math.floor(y / 2) * 2 + Math.floor(x / 2));
  }
  // an input sent averaged 8 x 8: pixel (y 2, x 3) is input rows 16-23, cols 24-31
  const gray = { kind: "image", c: 1, hgt: 4, wid: 4 };
  assert.equal(inputTip(gray, new Float32Array(16), { x: 3, y: 2, flat: 11 }, 8, [1, 30, 32]),
    "input rows 16\u201323, cols 24\u201331 (mean of 8\u00d78)\nvalue 0.000");
  assert.equal(gradTip(gray, new Float32Array(16), { x: 0, y: 3, flat: 12 }, { pooled: 8, full: [1, 30, 32] }), "rows 24\u201329, cols 0\u20137 (mean of 8\u00d78)\n0.000");
});

test("a conv layer drawn averaged down: a block's receptive field, the selected position's block", () => {
  // 4 positions per axis, each seeing 3 input pixels from 2*i: drawn averaged 2x2 (2 blocks per axis)
  const lo = [0, 2, 4, 6];
  const hi = [3, 5, 7, 9];
  const entry = { label: "conv", kind: "conv", shape: [1, 2, 2], maps: [2, 2], pooled: 2, field: { lo: [lo, lo], hi: [hi, hi] } };
  assert.deepEqual(receptiveField(entry, 1, 0), [[4, 9], [0, 5]]); // block (1, 0): positions 2-3 by 0-1
  assert.deepEqual(receptiveField(entry, 3, 1, 1), [[6, 9], [2, 5]]); // one position of the layer itself
  assert.deepEqual(shownPosition(entry, 3, 1), [1, 0]);
  assert.equal(layerTip(entry, { unit: 0, y: 1, x: 0, flat: 2 }, new Float32Array([0, 0, 5, 0]), []).split("\n")[0],
    "conv \u00b7 channel 0 \u00b7 position rows 2\u20133, cols 0\u20131 (mean of 2\u00d72)");
});
