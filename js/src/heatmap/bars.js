// The output layer as labeled horizontal bars: the largest output in the accent color, the
// selected one outlined.
import { finiteRange, maxAbs } from "../lib/arrays.js";
import { BAD, fmt } from "../lib/colormap.js";
import { SELECTION } from "../lib/draw.js";
import { themeColors } from "../lib/theme.js";
import { BAR_ROW, BAR_WIDTH } from "./geometry.js";

const LABEL_W = 70;
const VALUE_W = 64;

/** Index of the largest finite value (-1 when none). */
export function argmax(values) {
  let best = -1;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i]) && (best < 0 || values[i] > values[best])) best = i;
  return best;
}

/** Draw `values` as bars on `canvas`, labeled by `labels` (else the index); returns {kind: "bars", units, best}. */
export function drawBars(canvas, values, labels, selected) {
  const n = values.length;
  const width = BAR_WIDTH;
  canvas.width = width;
  canvas.height = n * BAR_ROW + 2;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const m = maxAbs(values) || 1;
  const [lo] = finiteRange(values);
  const zeroX = lo < 0 ? LABEL_W + (width - LABEL_W - VALUE_W) / 2 : LABEL_W;
  const span = lo < 0 ? (width - LABEL_W - VALUE_W) / 2 : width - LABEL_W - VALUE_W;
  const best = argmax(values);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  const theme = themeColors(canvas); // labels in the notebook's text colors (light in a dark theme)
  for (let i = 0; i < n; i++) {
    const y = i * BAR_ROW + 1;
    const v = values[i];
    ctx.fillStyle = theme.muted;
    ctx.textAlign = "right";
    ctx.fillText(labels[i] ?? String(i), LABEL_W - 6, y + BAR_ROW / 2);
    if (Number.isFinite(v)) {
      const w = (v / m) * span;
      ctx.fillStyle = i === best ? "#d6604d" : "#4393c3";
      ctx.fillRect(w >= 0 ? zeroX : zeroX + w, y + 2, Math.abs(w), BAR_ROW - 4);
    } else {
      ctx.fillStyle = `rgb(${BAD.join(",")})`;
      ctx.fillRect(zeroX, y + 2, span, BAR_ROW - 4);
    }
    ctx.fillStyle = theme.text;
    ctx.textAlign = "left";
    ctx.fillText(fmt(v), width - VALUE_W + 4, y + BAR_ROW / 2);
    if (i === selected) {
      ctx.strokeStyle = SELECTION;
      ctx.lineWidth = 2;
      ctx.strokeRect(1, y, width - 2, BAR_ROW);
    }
  }
  ctx.strokeStyle = "#999";
  ctx.beginPath();
  ctx.moveTo(zeroX + 0.5, 0);
  ctx.lineTo(zeroX + 0.5, canvas.height);
  ctx.stroke();
  return { kind: "bars", units: n, best };
}
