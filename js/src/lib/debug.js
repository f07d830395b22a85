// Test and benchmark instrumentation, off unless the page asks for it: set
// `globalThis.__nbvisDebug = true` before the views render (the browser-test harness does), or
// `localStorage.setItem("nbvis-debug", "1")` and reload. When on, a view's root element carries
// `root.nbvisDebug = {drawTimes, roundTrips, lastDrawMs, lastRoundTripMs}` (milliseconds, the
// last 500 of each). Off, nothing is recorded. `data-draws` (a count) is always kept: it is part
// of the data- contract (ARCHITECTURE.md) that says a view has drawn.

const KEEP = 500;

/** Whether the page asked for instrumentation. */
export function debugEnabled() {
  if (globalThis.__nbvisDebug === true) return true;
  try {
    return globalThis.localStorage?.getItem("nbvis-debug") === "1";
  } catch {
    return false; // storage can be unavailable (sandboxed frames)
  }
}

function push(list, value) {
  list.push(value);
  if (list.length > KEEP) list.shift();
}

/**
 * Instrumentation for the view rooted at `root`: `drew(ms)` after each draw (counts it in
 * data-draws, and keeps the time when debugging), `roundTrip(ms)` when the kernel answered a request.
 */
export function instrument(root, enabled = debugEnabled()) {
  let draws = 0;
  const stats = enabled ? { drawTimes: [], roundTrips: [], lastDrawMs: null, lastRoundTripMs: null } : null;
  if (stats) root.nbvisDebug = stats;
  return {
    enabled,
    drew(ms) {
      draws += 1;
      root.dataset.draws = String(draws);
      if (!stats) return;
      stats.lastDrawMs = ms;
      push(stats.drawTimes, ms);
    },
    roundTrip(ms) {
      if (!stats) return;
      stats.lastRoundTripMs = ms;
      push(stats.roundTrips, ms);
    },
  };
}
