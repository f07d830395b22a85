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

/** The input pixel p = {x, y, flat} of an image input drawn as `info`. */
export function inputTip(info, data, p) {
  return `input (${p.y}, ${p.x})\n${pixelValues(info, data, p.flat)}`;
}

/** A point of the why map: an image pixel p ({x, y, flat}) or a layer unit hit ({unit, y, x, flat}). */
export function gradTip(info, data, hit) {
  if (info.kind === "image") return `(${hit.y}, ${hit.x})\n${pixelValues(info, data, hit.flat, "")}`;
  const where = info.kind === "conv" ? `channel ${hit.unit} (${hit.y}, ${hit.x})` : `unit ${hit.unit}`;
  return `${where}\n${fmt(data[hit.flat])}`;
}

/**
 * The lines for unit `hit` of a layer `entry` whose activation is `values`: the layer, unit or
 * channel and position, value; the input pixels a conv position sees (`field`); the softmax of an output.
 */
export function layerTip(entry, hit, values, labels, field = null) {
  const v = values[hit.flat];
  if (entry.kind === "conv") {
    const pos = entry.shape.length === 3 ? `(${hit.y}, ${hit.x})` : `${hit.y * entry.maps[1] + hit.x}`;
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
