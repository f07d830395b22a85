// Colormaps, color scales and number formatting of lib/colormap.js.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BAD, DIVERGING, SEQUENTIAL, fmt, gradientCss, imageRange, lutIndex, scaleOf, setPixel } from "../src/lib/colormap.js";

const rgb = (table, i) => [table[3 * i], table[3 * i + 1], table[3 * i + 2]];

test("the tables run through their stops", () => {
  assert.equal(DIVERGING.length, 256 * 3);
  assert.deepEqual(rgb(DIVERGING, 0), [5, 48, 97]);
  assert.deepEqual(rgb(DIVERGING, 255), [103, 0, 31]);
  // the middle of the diverging map is (almost) white: zero reads as no color
  for (const c of rgb(DIVERGING, 128)) assert.ok(c >= 240, `${rgb(DIVERGING, 128)}`);
  assert.deepEqual(rgb(SEQUENTIAL, 0), [0, 0, 4]);
  assert.deepEqual(rgb(SEQUENTIAL, 255), [252, 253, 191]);
  // sequential brightens monotonically (sum of channels)
  for (let i = 1; i < 256; i++) {
    const [a, b] = [rgb(SEQUENTIAL, i - 1), rgb(SEQUENTIAL, i)];
    assert.ok(b[0] + b[1] + b[2] >= a[0] + a[1] + a[2] - 1, `at ${i}`);
  }
});

test("lutIndex maps the scale onto 0..255, clamps, and flags non-finite values", () => {
  assert.equal(lutIndex(-1, -1, 1), 0);
  assert.equal(lutIndex(1, -1, 1), 255);
  assert.equal(lutIndex(0, -1, 1), 128);
  assert.equal(lutIndex(5, -1, 1), 255);
  assert.equal(lutIndex(-5, -1, 1), 0);
  assert.equal(lutIndex(3, 3, 3), 128); // an empty scale shows its middle
  assert.equal(lutIndex(NaN, 0, 1), -1);
  assert.equal(lutIndex(Infinity, 0, 1), -1);
});

test("setPixel writes the table's color, or the bad-value color, fully opaque", () => {
  const image = { data: new Uint8ClampedArray(8) };
  setPixel(image, 0, DIVERGING, 255);
  setPixel(image, 1, DIVERGING, -1);
  assert.deepEqual(Array.from(image.data), [103, 0, 31, 255, ...BAD, 255]);
});

test("scaleOf: sequential from zero for non-negative values, symmetric diverging otherwise", () => {
  const seq = scaleOf(new Float32Array([0, 2, 5, NaN]));
  assert.equal(seq.table, SEQUENTIAL);
  assert.deepEqual([seq.lo, seq.hi], [0, 5]);
  const div = scaleOf(new Float32Array([-3, 1]));
  assert.equal(div.table, DIVERGING);
  assert.deepEqual([div.lo, div.hi], [-3, 3]);
  assert.deepEqual([scaleOf(new Float32Array([0, 0])).lo, scaleOf(new Float32Array([0, 0])).hi], [0, 1]);
  const forced = scaleOf(new Float32Array([1, 2]), true);
  assert.deepEqual([forced.table === DIVERGING, forced.lo, forced.hi], [true, -2, 2]);
  assert.deepEqual([scaleOf(new Float32Array([0]), true).lo, scaleOf(new Float32Array([0]), true).hi], [-1, 1]);
});

test("imageRange keeps [0, 1] images as they are and stretches others", () => {
  assert.deepEqual(imageRange(new Float32Array([0, 0.5, 1])), [0, 1]);
  assert.deepEqual(imageRange(new Float32Array([-2, 3])), [-2, 3]);
  assert.deepEqual(imageRange(new Float32Array([4, 4])), [4, 5]);
});

test("fmt: four significant digits, exponents for tiny and huge values", () => {
  assert.equal(fmt(0.123456), "0.1235");
  assert.equal(fmt(0), "0.000");
  assert.equal(fmt(12345), "1.235e+4");
  assert.equal(fmt(-0.0001234), "-1.234e-4");
  assert.equal(fmt(NaN), "NaN");
  assert.equal(fmt(-Infinity), "-Infinity");
});

test("gradientCss lists nine stops from the first to the last color", () => {
  const css = gradientCss(DIVERGING);
  assert.ok(css.startsWith("linear-gradient(to right, rgb(5,48,97) 0%"), css);
  assert.ok(css.endsWith("rgb(103,0,31) 100%)"), css);
  assert.equal(css.match(/rgb\(/g).length, 9);
});
