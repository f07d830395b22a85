// The text of the ActivationHeatmap's tooltips (pure): a layer's unit, an input pixel, a point of
// the why map. Values come from arrays already in the browser: hovering sends nothing to the kernel.
import { softmax } from "../lib/arrays.js";
import { fmt } from "../lib/colormap.js";

const DOT = " \u00b7 ";

/** Channel values of pixel p of a (c, H, W) image: "R .. G .. B .." for RGB, else "value ..". */
function pixelValues(info, data, flat, single = "value ") {
  if (info.c === 3) {
    const plane = info.hgt * info.wid;
    return `R ${fmt(data[flat])} G ${fmt(data[plane + flat])} B ${fmt(data[2 * plane + flat])}`;
  }
  return `${single}${fmt(data[flat])}`;
}

/**
 * Where pixel p = {x, y} of an image drawn `k` times smaller than the input is, in input pixels:
 * "(y, x)", or "rows a–b, cols c–d (mean of k×k)" for a pixel that is the mean of a block.
 */
export function inputPlace(p, k = 1, full = null) {
  if (k <= 1) return `(${p.y}, ${p.x})`;
  const end = (start, size) => Math.min(start + k, size ?? start + k) - 1;
  const [, hgt, wid] = full || [];
  return `rows ${p.y * k}\u2013${end(p.y * k, hgt)}, cols ${p.x * k}\u2013${end(p.x * k, wid)} (mean of ${k}\u00d7${k})`;
}

/** The input pixel p = {x, y, flat} of an image input drawn as `info` (`k`: averaged down k times, of `full` [c, H, W]). */
export function inputTip(info, data, p, k = 1, full = null) {
  return `input ${inputPlace(p, k, full)}\n${pixelValues(info, data, p.flat)}`;
}

/** Units a run or block of `entry` (sent averaged, see geometry.realUnit) stands for, from its first `unit`. */
function unitsOf(entry, unit, hit) {
  const k = entry && entry.pooled;
  if (!k || entry.kind === "conv" || entry.kind === "bars") return `unit ${unit}`;
  if (entry.fold) return `units from ${unit}${DOT}map ${hit.channel} ${inputPlace(hit, k, entry.full)}`;
  return `units ${unit}\u2013${Math.min(unit + k, entry.units) - 1} (mean of ${k})`;
}

/**
 * A point of the why map: an image pixel p ({x, y, flat}) or a layer unit hit ({unit, y, x, flat});
 * `entry`: what the map is over (the input's layout entry, or the layer's), `unit`: the hit's real unit.
 */
export function gradTip(info, data, hit, entry = null, unit = hit.unit) {
  if (info.kind === "image") return `${inputPlace(hit, entry?.pooled, entry?.full)}\n${pixelValues(info, data, hit.flat, "")}`;
  const where = info.kind === "conv" ? `channel ${hit.unit} (${hit.y}, ${hit.x})` : unitsOf(entry, unit, hit);
  return `${where}\n${fmt(data[hit.flat])}`;
}

/**
 * The lines for unit `hit` of a layer `entry` whose activation is `values`: the layer, unit or
 * channel and position, value; the input pixels a conv position sees (`field`); the softmax of an output.
 */
export function layerTip(entry, hit, values, labels, field = null, unit = hit.unit) {
  const v = values[hit.flat];
  if (entry.pooled && entry.kind !== "conv") return `${entry.label}${DOT}${unitsOf(entry, unit, hit)}\nvalue ${fmt(v)}`;
  if (entry.kind === "conv") {
    const k = entry.pooled;
    const pos = entry.shape.length !== 3 ? `${hit.y * entry.maps[1] + hit.x}` : k ? inputPlace(hit, k) : `(${hit.y}, ${hit.x})`;
    const lines = [`${entry.label}${DOT}channel ${hit.unit}${DOT}position ${pos}`, `value ${fmt(v)}`];
    if (field) lines.push(`sees input rows ${field[0][0]}\u2013${field[0][1] - 1}, cols ${field[1][0]}\u2013${field[1][1] - 1}`);
    return lines.join("\n");
  }
  const name = entry.output && labels[hit.unit] !== undefined ? ` (${labels[hit.unit]})` : "";
  const folded = hit.channel !== undefined ? `${DOT}map ${hit.channel} (${hit.y}, ${hit.x})` : "";
  const lines = [`${entry.label}${DOT}unit ${hit.unit}${name}${folded}`, `value ${fmt(v)}`];
  if (entry.output && entry.shape.length === 1) lines.push(`softmax ${fmt(softmax(values, hit.unit))}`);
  return lines.join("\n");
}
