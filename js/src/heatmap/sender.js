// Sending new inputs to the kernel (drawing, upload, webcam): one request in flight at a time, so
// the kernel never falls behind the pointer. The kernel answers by setting `_seq_done` in the same
// message as the new activations; a request unanswered for 3 s no longer holds the next one back.
// Each view numbers its requests from its own random start and waits for exactly its own number:
// two views of one widget (or a view reopened after a reload) share `_seq_done`, and one view's
// answer must neither release the other nor repeat the value the trait already holds (a trait
// set to its own value sends nothing).
import { debugEnabled } from "../lib/debug.js";
import { sendBytes } from "../lib/export.js";

const STALE_MS = 3000;

/**
 * {send(source, shape, bytes, extra, {force}), busy(), inflight(), ack(), noteRoundTrip()}.
 * send() with a request in flight keeps only the latest one and sends it on ack(); `force` sends at once.
 */
export function inputSender(model, view) {
  let seq = Math.floor(Math.random() * 2 ** 30);
  let inflight = 0;
  let inflightAt = 0;
  let pending = null;
  const sentAt = debugEnabled() ? new Map() : null; // round trips, for the browser tests and benchmarks

  function send(source, shape, bytes, extra = {}, { force = false } = {}) {
    if (!force && inflight && performance.now() - inflightAt < STALE_MS) {
      pending = () => send(source, shape, bytes, extra);
      return;
    }
    pending = null;
    seq += 1;
    inflight = seq;
    inflightAt = performance.now();
    if (sentAt) sentAt.set(seq, inflightAt);
    sendBytes(model, { type: "input", source, seq, shape, ...extra }, bytes); // base64 text where buffers are dropped
  }

  /** The kernel finished request `_seq_done`: send the one kept back, if any. */
  function ack() {
    const done = model.get("_seq_done");
    if (inflight && done === inflight) {
      inflight = 0;
      if (pending) {
        const next = pending;
        pending = null;
        next();
      }
    }
  }

  /** After a draw: the time from sending the request now answered to its drawing (debug only). */
  function noteRoundTrip() {
    if (!sentAt) return;
    const done = model.get("_seq_done");
    const t0 = sentAt.get(done);
    if (t0 === undefined) return;
    sentAt.delete(done);
    view.stats.roundTrip(performance.now() - t0);
  }

  return {
    send,
    ack,
    noteRoundTrip,
    /** A request is unanswered. */
    inflight: () => inflight !== 0,
    /** A request is unanswered or waiting to go. */
    busy: () => inflight !== 0 || pending !== null,
  };
}
