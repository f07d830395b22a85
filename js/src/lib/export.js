// What lets a view leave the notebook: the image it drew (a download button, and snapshots that
// Python asks for with `await view.snapshot()`), and the static mode of an offline export (no
// kernel: the controls that need one are disabled, hovering still works).
import { toBase64 } from "./arrays.js";

/** True in an export made by `view.to_html()`: the view draws from saved state, with no kernel. */
export function isStatic(model) {
  return !!model.get("_nbvis_static");
}

/**
 * True where no kernel is behind the view's model: a page made by `nbconvert --execute --to html`,
 * or a saved notebook opened without its kernel. ipywidgets marks the view's element
 * `jupyter-widgets-disconnected` before it renders when the model has no live comm.
 */
export function kernelGone(el) {
  return !!(el && el.classList && el.classList.contains("jupyter-widgets-disconnected"));
}

/** Send `content` to Python with one binary payload (as base64 text where buffers are dropped). */
export function sendBytes(model, content, bytes) {
  if (isStatic(model)) return;
  if (model.get("_base64")) model.send({ ...content, data64: toBase64(bytes) });
  else model.send(content, undefined, [bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)]);
}

/** The first opaque background color around `node` (the page's, in any theme). */
export function backgroundOf(node) {
  for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
    const color = getComputedStyle(n).backgroundColor;
    if (color && color !== "transparent" && !/rgba\(.*,\s*0\)$/.test(color)) return color;
  }
  return "#fff";
}

/** Every canvas and plotly chart inside `root`, composed at its place on screen, on the page's background. */
export async function drawnImage(root) {
  const box = root.getBoundingClientRect();
  const out = document.createElement("canvas");
  out.width = Math.max(1, Math.ceil(box.width));
  out.height = Math.max(1, Math.ceil(box.height));
  const ctx = out.getContext("2d");
  ctx.fillStyle = backgroundOf(root);
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.imageSmoothingEnabled = false;
  for (const canvas of root.querySelectorAll("canvas")) {
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height || !canvas.width || !canvas.height) continue;
    ctx.drawImage(canvas, r.left - box.left, r.top - box.top, r.width, r.height);
  }
  const Plotly = globalThis.Plotly;
  if (Plotly && Plotly.toImage) {
    for (const chart of root.querySelectorAll(".js-plotly-plot")) {
      const r = chart.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      const url = await Plotly.toImage(chart, { format: "png", width: Math.round(r.width), height: Math.round(r.height) });
      const image = new Image();
      image.src = url;
      await image.decode();
      ctx.drawImage(image, r.left - box.left, r.top - box.top, r.width, r.height);
    }
  }
  return out;
}

/** The PNG bytes of a canvas. */
export async function pngBytes(canvas) {
  const blob = await new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas could not be encoded"))), "image/png"),
  );
  return new Uint8Array(await blob.arrayBuffer());
}

/** Save the drawn image of `root` as a PNG file. */
export async function downloadPng(root, name) {
  const canvas = await drawnImage(root);
  const url = URL.createObjectURL(new Blob([await pngBytes(canvas)], { type: "image/png" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `${name}.png`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Answer a snapshot request from Python: the PNG of the view (or of the Explorer around it). */
export async function answerSnapshot(model, el, root, request) {
  const scope = request.scope === "explorer" ? el.closest(".nbvis-explorer") || root : root;
  try {
    const bytes = await pngBytes(await drawnImage(scope));
    sendBytes(model, { type: "snapshot", id: request.id }, bytes);
  } catch (error) {
    model.send({ type: "snapshot", id: request.id, error: String(error) });
  }
}

const CONTROLS = "button:not(.nbvis-local), select, input, textarea";

/** In an export: disable every control of `root` that would need the kernel, now and when added later. */
export function disableKernelControls(root) {
  const disable = () => {
    for (const control of root.querySelectorAll(CONTROLS)) {
      if (!control.disabled) {
        control.disabled = true;
        control.title = "needs the Python kernel (this is a static export)";
      }
    }
  };
  disable();
  const observer = new MutationObserver(disable);
  observer.observe(root, { childList: true, subtree: true, attributes: true, attributeFilter: ["disabled"] });
  return () => observer.disconnect();
}
