// WeightGrid view: each unit's incoming weights as a tile on one canvas.
import "./lib/nbvis.css";
import { arrayGetter, maxAbs } from "./lib/arrays.js";
import { DIVERGING, fmt, gradientCss, lutIndex, setPixel } from "./lib/colormap.js";
import { numberBox } from "./lib/controls.js";
import { SELECTION, blit } from "./lib/draw.js";
import { publishLayout, tileAt, tileGrid, tileOrigin, tileRect } from "./lib/grid.js";
import { canvasPoint } from "./lib/pointer.js";
import { boundCheckbox, boundSelect, colorbar, h, setTraits, setupView } from "./lib/view.js";

const MAX_WIDTH = 960;

function render({ model, el }) {
  const view = setupView(model, el, "weight-grid");
  const { on, listen, tooltip } = view;
  const tiles = arrayGetter(model, "_tiles");
  const units = arrayGetter(model, "_units");
  const bias = arrayGetter(model, "_bias");
  const products = arrayGetter(model, "_products");

  // ----- toolbar -----
  const sortSelect = boundSelect(model, on, "sort_by", [
    ["index", "unit index"],
    ["norm", "weight norm"],
    ["bias", "bias"],
    ["class", "contribution to class"],
  ], "sort ");
  const classSelect = h("select");
  const classLabel = h("label", {}, ["class ", classSelect]);
  classSelect.addEventListener("change", () => setTraits(model, { sort_class: Number(classSelect.value) }));
  const topK = numberBox(listen, {
    current: () => model.get("top_k"),
    apply: (value) => setTraits(model, { top_k: value }),
    max: () => model.get("n_units"),
    title: "show only the first k units in this order (0: all)",
  });
  const scaleSelect = boundSelect(model, on, "scale", [
    ["shared", "shared"],
    ["tile", "per tile"],
  ], "scale ");
  const productsBox = boundCheckbox(model, on, "show_products", "input \u00d7 weights");
  const indexBox = boundCheckbox(model, on, "show_index", "unit numbers");
  const prev = h("button", { textContent: "\u25c0", title: "previous page" });
  const next = h("button", { textContent: "\u25b6", title: "next page" });
  const pageText = h("span", { class: "nbvis-muted" });
  prev.addEventListener("click", () => setTraits(model, { page: Math.max(0, model.get("page") - 1) }));
  next.addEventListener("click", () => setTraits(model, { page: Math.min(model.get("n_pages") - 1, model.get("page") + 1) }));
  const legend = colorbar(gradientCss(DIVERGING));
  const rgbNote = h("span", { class: "nbvis-muted nbvis-rgb-note" });
  const title = h("strong");
  const bar = h("div", { class: "nbvis-bar" }, [
    title, sortSelect, classLabel, h("label", {}, ["top k ", topK]), scaleSelect, productsBox, indexBox,
    h("span", {}, [prev, " ", pageText, " ", next]), legend.element, rgbNote,
  ]);
  const canvas = h("canvas");
  view.body.append(bar, canvas);
  const ctx = canvas.getContext("2d");

  let layout = null;

  function updateBar() {
    const labels = model.get("class_labels") || [];
    const total = model.get("n_units");
    const shown = units()?.data.length ?? total;
    title.textContent = `${model.get("layer")} \u00b7 ${shown < total ? `${shown} of ${total}` : total} unit${total === 1 ? "" : "s"}`;
    sortSelect.querySelector('option[value="class"]').disabled = labels.length === 0;
    classLabel.style.display = model.get("sort_by") === "class" ? "" : "none";
    if (classSelect.options.length !== labels.length) {
      classSelect.replaceChildren(...labels.map((text, i) => h("option", { value: i, textContent: text })));
    }
    classSelect.value = String(model.get("sort_class"));
    topK.show();
    productsBox.style.display = model.get("has_input") && model.get("kind") === "linear" ? "" : "none";
    const pages = model.get("n_pages");
    pageText.textContent = `page ${model.get("page") + 1} / ${pages}`;
    prev.disabled = model.get("page") <= 0;
    next.disabled = model.get("page") >= pages - 1;
  }

  function tileScale(values, t, size) {
    return model.get("scale") === "tile" ? maxAbs(values, t * size, (t + 1) * size) : null;
  }

  // Paint tile t of (values, shape) into `image` at native offset (ox, oy).
  function paintTile(image, values, shape, t, ox, oy, shared) {
    const [, th, tw, tc] = shape;
    const size = th * tw * tc;
    const s = tileScale(values, t, size) ?? shared;
    const base = t * size;
    for (let y = 0; y < th; y++) {
      for (let x = 0; x < tw; x++) {
        const p = (oy + y) * image.width + ox + x;
        const i = base + (y * tw + x) * tc;
        if (tc === 3) {
          const o = p * 4;
          let bad = false;
          for (let c = 0; c < 3; c++) {
            const v = values[i + c];
            if (!Number.isFinite(v)) bad = true;
            image.data[o + c] = s > 0 ? 255 * (0.5 + v / (2 * s)) : 128;
          }
          image.data[o + 3] = bad ? 0 : 255;
        } else if (Number.isNaN(values[i])) {
          image.data[p * 4 + 3] = 0; // a gap between channels
        } else {
          setPixel(image, p, DIVERGING, lutIndex(values[i], -s, s));
        }
      }
    }
  }

  function draw() {
    updateBar();
    const w = tiles();
    const u = units();
    if (w && u) view.timed(() => drawTiles(w, u));
  }

  function drawTiles(w, u) {
    const [n, th, tw, tc] = w.shape;
    const prod = model.get("show_products") ? products() : null;
    const panels = prod ? 2 : 1;
    const zoom = model.get("zoom") > 0 ? model.get("zoom") : Math.max(1, Math.min(12, Math.round(64 / Math.max(th, tw))));
    const cellW = panels * (tw + 1) + 1; // native pixels: tile(s) + gaps
    const cellH = th + 2;
    const cols = Math.max(1, Math.min(Math.ceil(Math.sqrt(n * (cellH / cellW))), Math.floor(MAX_WIDTH / (cellW * zoom)) || 1, n));
    // one grid cell holds the tile and its input x weights beside it; a 1 px border around each
    const grid = tileGrid({ count: n, cols, tileW: cellW - 2, tileH: th, pitchW: cellW, pitchH: cellH, originX: 1, zoom });
    const image = new ImageData(grid.nativeW, grid.nativeH);
    const shared = model.get("vmax");
    const sharedProd = prod ? maxAbs(prod.data) : 0;
    for (let t = 0; t < n; t++) {
      const [ox, oy] = tileOrigin(grid, t);
      paintTile(image, w.data, w.shape, t, ox, oy, shared);
      if (prod) paintTile(image, prod.data, prod.shape, t, ox + tw + 1, oy, sharedProd);
    }
    blit(canvas, image, zoom);
    const selected = model.get("selected");
    for (let t = 0; t < n; t++) {
      if (u.data[t] !== selected) continue;
      const [x, y] = tileRect(grid, t);
      ctx.strokeStyle = SELECTION;
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 0.5 * zoom, y + 0.5 * zoom, (cellW - 1) * zoom, (cellH - 1) * zoom);
    }
    if (model.get("show_index")) drawIndices(u, n, cols, cellW, cellH, th, zoom);
    layout = { ...grid, n, th, tw, tc, panels };
    publishLayout(canvas, grid);
    const perTile = model.get("scale") === "tile";
    // RGB tiles are colors (mid-gray is 0), not the diverging map: no colorbar for them.
    legend.element.style.display = tc === 3 ? "none" : "";
    rgbNote.style.display = tc === 3 ? "" : "none";
    rgbNote.textContent = perTile ? "RGB weights, gray = 0, \u00b1max of each tile" : `RGB weights, gray = 0, \u00b1${fmt(shared)}`;
    legend.update(perTile ? "-max" : fmt(-shared), perTile ? "+max" : fmt(shared), perTile ? "per tile" : "weight");
    view.root.dataset.tiles = String(n);
    view.root.dataset.cols = String(cols);
    view.root.dataset.selected = selected == null ? "" : String(selected);
  }

  // Each tile's unit index in its top-left corner, on a dark plate so it reads on any colors.
  function drawIndices(u, n, cols, cellW, cellH, th, zoom) {
    const size = Math.max(9, Math.min(14, Math.round((th * zoom) / 3)));
    ctx.font = `${size}px var(--jp-code-font-family, monospace)`;
    ctx.textBaseline = "top";
    for (let t = 0; t < n; t++) {
      const text = String(u.data[t]);
      const x = ((t % cols) * cellW + 1) * zoom;
      const y = (Math.floor(t / cols) * cellH + 1) * zoom;
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fillRect(x, y, ctx.measureText(text).width + 4, size + 2);
      ctx.fillStyle = "#fff";
      ctx.fillText(text, x + 2, y + 1);
    }
  }

  // What pixel (y, x) of a tile is, from the unit's (C, H, W) weights and how they were laid out.
  function describePixel(y, x) {
    const [channels, height, width] = model.get("source_shape") || [1, layout.th, layout.tw];
    const reduction = model.get("reduction");
    const conv = model.get("kind") === "conv";
    const where = (c, ky, kx) => {
      const pos = conv ? `kernel offset (${ky}, ${kx})` : `input pixel (${ky}, ${kx})`;
      return c === null ? pos : `input channel ${c}, ${pos}`;
    };
    if (reduction === "channels" && channels > 1) {
      const cols = Math.ceil(Math.sqrt(channels));
      const r = Math.floor(y / (height + 1));
      const q = Math.floor(x / (width + 1));
      return where(r * cols + q, y % (height + 1), x % (width + 1));
    }
    if (reduction === "mean" || reduction === "norm") return `${where(null, y, x)}, ${reduction} over ${channels} channels`;
    if (/^\d+$/.test(reduction)) return where(Number(reduction), y, x);
    return where(channels > 1 && reduction !== "rgb" ? 0 : null, y, x);
  }

  // The tile and pixel under a mouse event, or null.
  function hit(event) {
    if (!layout) return null;
    const cell = tileAt(layout, ...canvasPoint(canvas, event));
    if (!cell) return null;
    const { tile: t, x: inX, y } = cell;
    const panel = Math.floor(inX / (layout.tw + 1));
    const x = inX - panel * (layout.tw + 1);
    const inside = y >= 0 && y < layout.th && x >= 0 && x < layout.tw && panel < layout.panels;
    return { t, x, y, panel, inside };
  }

  listen(canvas, "mousemove", (event) => {
    const where = hit(event);
    if (!where) return tooltip.hide();
    const u = units().data[where.t];
    const lines = [`unit ${u}`, `bias ${fmt(bias().data[where.t])}`];
    if (where.inside) {
      const source = where.panel === 1 ? products() : tiles();
      const { th, tw, tc } = layout;
      const i = where.t * th * tw * tc + (where.y * tw + where.x) * tc;
      const what = where.panel === 1 ? "input\u00d7weight" : "weight";
      if (tc === 3) {
        lines.push(describePixel(where.y, where.x), `${what} R ${fmt(source.data[i])} G ${fmt(source.data[i + 1])} B ${fmt(source.data[i + 2])}`);
      } else if (!Number.isNaN(source.data[i])) {
        lines.push(describePixel(where.y, where.x), `${what} ${fmt(source.data[i])}`);
      }
    }
    tooltip.show(lines.join("\n"), event);
  });
  listen(canvas, "mouseleave", () => tooltip.hide());
  listen(canvas, "click", (event) => {
    const where = hit(event);
    if (where) setTraits(model, { selected: units().data[where.t] });
  });

  view.redrawOn(["_tiles", "_products", "_units", "_bias", "scale", "selected", "vmax", "zoom", "show_products",
    "page", "n_pages", "sort_by", "sort_class", "top_k", "has_input", "class_labels", "show_index", "source_shape",
    "reduction"], draw);
  draw();
  return view.cleanup;
}

export default { render };
