// Number boxes and sliders: values are clamped to the range and rounded to the step.
import assert from "node:assert/strict";
import { test } from "node:test";
import { clampNumber } from "../src/lib/controls.js";

test("typed values are clamped to the range and rounded to the step", () => {
  assert.equal(clampNumber("-3", { min: 1, max: 1000 }), 1);
  assert.equal(clampNumber("5000", { min: 0, max: 6 }), 6);
  assert.equal(clampNumber("2.6", { min: 0, max: 10 }), 3);
  assert.equal(clampNumber("7", { min: 0, max: 10, step: 2 }), 8);
  assert.equal(clampNumber("0.123", { min: 0, max: 1, step: "any" }), 0.123);
  assert.equal(clampNumber(4, { min: 0, max: -1 }), 0); // an empty range gives its lowest value
});

test("what is not a number is refused", () => {
  for (const text of ["", "  ", "abc", "1e999"]) assert.equal(clampNumber(text, { min: 0, max: 5 }), null);
  assert.equal(clampNumber(NaN), null);
});
