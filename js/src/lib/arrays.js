// Decode the packed arrays that nbvis/_arrays.py sends ({dtype, shape, data: DataView}, or with
// `data` as base64 text where binary buffers are dropped: Colab, or NBVIS_BASE64=1), and the
// small reductions the views take of them. Pure: no DOM.

const CTORS = { float32: Float32Array, uint8: Uint8Array, int32: Int32Array };

/** The bytes of base64 text as a DataView. */
export function base64View(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new DataView(bytes.buffer);
}

/** Bytes (a typed array or ArrayBuffer) as base64 text. */
export function toBase64(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let raw = "";
  for (let i = 0; i < bytes.length; i += 0x8000) raw += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(raw);
}

/** A packed array as {data: TypedArray, shape: number[]}, or null for a null trait. */
export function decode(packed) {
  if (!packed || !packed.data) return null;
  const Ctor = CTORS[packed.dtype];
  if (!Ctor) throw new Error(`unknown array dtype ${packed.dtype}`);
  const view = typeof packed.data === "string" ? base64View(packed.data) : packed.data;
  const bytes = view.byteLength;
  const n = bytes / Ctor.BYTES_PER_ELEMENT;
  const data =
    view.byteOffset % Ctor.BYTES_PER_ELEMENT === 0
      ? new Ctor(view.buffer, view.byteOffset, n)
      : new Ctor(view.buffer.slice(view.byteOffset, view.byteOffset + bytes));
  return { data, shape: packed.shape || [n] };
}

/** The trait `name` decoded; cached until the trait changes. */
export function arrayGetter(model, name) {
  let cachedFor = undefined;
  let cached = null;
  return () => {
    const packed = model.get(name);
    if (packed !== cachedFor) {
      cachedFor = packed;
      cached = decode(packed);
    }
    return cached;
  };
}

/** Largest absolute finite value of a typed array slice (0 when none). */
export function maxAbs(data, start = 0, end = data.length) {
  let m = 0;
  for (let i = start; i < end; i++) {
    const v = Math.abs(data[i]);
    if (v > m && Number.isFinite(v)) m = v;
  }
  return m;
}

/** [min, max] of the finite values of a slice ([0, 0] when none). */
export function finiteRange(data, start = 0, end = data.length) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = start; i < end; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return Number.isFinite(lo) && Number.isFinite(hi) ? [lo, hi] : [0, 0];
}

/** Softmax probability of entry i of `data` (computed stably). */
export function softmax(data, i) {
  let m = -Infinity;
  for (const v of data) if (v > m) m = v;
  let s = 0;
  for (const v of data) s += Math.exp(v - m);
  return Math.exp(data[i] - m) / s;
}

/** Sum of the c planes of a (c, ...) array laid out plane after plane. */
export function sumPlanes(data, c) {
  const plane = data.length / c;
  const out = new Float32Array(plane);
  for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) out[p] += data[k * plane + p];
  return out;
}
