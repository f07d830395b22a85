// Instrumentation of lib/debug.js: off by default, bounded when on.
import assert from "node:assert/strict";
import { test } from "node:test";
import { debugEnabled, instrument } from "../src/lib/debug.js";

test("off: draws are counted in data-draws and nothing else is kept", () => {
  assert.equal(debugEnabled(), false);
  const root = { dataset: {} };
  const stats = instrument(root);
  stats.drew(3);
  stats.drew(4);
  stats.roundTrip(10);
  assert.equal(root.dataset.draws, "2");
  assert.equal(root.nbvisDebug, undefined);
});

test("on: the last 500 draw and round-trip times are kept on the root", () => {
  globalThis.__nbvisDebug = true;
  try {
    assert.equal(debugEnabled(), true);
    const root = { dataset: {} };
    const stats = instrument(root);
    for (let i = 0; i < 600; i++) stats.drew(i);
    stats.roundTrip(12.5);
    assert.equal(root.nbvisDebug.drawTimes.length, 500);
    assert.equal(root.nbvisDebug.drawTimes[0], 100);
    assert.equal(root.nbvisDebug.lastDrawMs, 599);
    assert.deepEqual(root.nbvisDebug.roundTrips, [12.5]);
    assert.equal(root.dataset.draws, "600");
  } finally {
    delete globalThis.__nbvisDebug;
  }
});
