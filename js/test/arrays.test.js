// Array decoding and the small reductions of lib/arrays.js.
import assert from "node:assert/strict";
import { test } from "node:test";
import { arrayGetter, decode, finiteRange, maxAbs, softmax, sumPlanes } from "../src/lib/arrays.js";

function packed(dtype, values, offset = 0) {
  const Ctor = { float32: Float32Array, uint8: Uint8Array, int32: Int32Array }[dtype];
  const src = new Ctor(values);
  const buffer = new ArrayBuffer(offset + src.byteLength);
  new Uint8Array(buffer, offset).set(new Uint8Array(src.buffer));
  return { dtype, shape: [values.length], data: new DataView(buffer, offset, src.byteLength) };
}

test("decode reads float32, uint8 and int32 buffers as typed arrays", () => {
  assert.deepEqual(Array.from(decode(packed("float32", [1.5, -2, 3])).data), [1.5, -2, 3]);
  assert.deepEqual(Array.from(decode(packed("uint8", [0, 7, 255])).data), [0, 7, 255]);
  assert.deepEqual(Array.from(decode(packed("int32", [-1, 2 ** 30])).data), [-1, 2 ** 30]);
  const d = decode({ dtype: "float32", shape: [2, 1], data: packed("float32", [4, 5]).data });
  assert.deepEqual(d.shape, [2, 1]);
  assert.ok(d.data instanceof Float32Array);
});

test("decode copies a buffer that does not start on an element boundary", () => {
  const p = packed("float32", [0.25, 8, -1e-3], 2);
  assert.equal(p.data.byteOffset % 4, 2);
  assert.deepEqual(Array.from(decode(p).data), Array.from(new Float32Array([0.25, 8, -1e-3])));
});

test("decode of a null trait is null; an unknown dtype is an error", () => {
  assert.equal(decode(null), null);
  assert.equal(decode({ dtype: "float32" }), null);
  assert.throws(() => decode({ dtype: "float64", data: new DataView(new ArrayBuffer(8)) }), /unknown array dtype float64/);
});

test("arrayGetter decodes once per trait value", () => {
  let value = packed("float32", [1, 2]);
  const model = { get: () => value };
  const get = arrayGetter(model, "_x");
  const first = get();
  assert.equal(get(), first);
  value = packed("float32", [3]);
  assert.deepEqual(Array.from(get().data), [3]);
});

test("maxAbs and finiteRange skip NaN and infinities", () => {
  const data = new Float32Array([1, -4, NaN, Infinity, 2, -Infinity]);
  assert.equal(maxAbs(data), 4);
  assert.equal(maxAbs(data, 4, 5), 2);
  assert.deepEqual(finiteRange(data), [-4, 2]);
  assert.deepEqual(finiteRange(new Float32Array([NaN])), [0, 0]);
  assert.equal(maxAbs(new Float32Array(0)), 0);
});

test("softmax matches the hand computation and stays finite for large logits", () => {
  const logits = new Float32Array([1, 2, 3]);
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
  const total = e[0] + e[1] + e[2];
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(softmax(logits, i) - e[i] / total) < 1e-12);
  assert.ok(Math.abs(softmax(new Float32Array([1000, 1000]), 0) - 0.5) < 1e-12);
});

test("sumPlanes adds the channel planes", () => {
  assert.deepEqual(Array.from(sumPlanes(new Float32Array([1, 2, 10, 20, 100, 200]), 3)), [111, 222]);
});
