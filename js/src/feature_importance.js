// FeatureImportance view: a sorted horizontal plotly bar chart with error bars, progress and
// cancel, and for image inputs the importance map drawn over a sample image.
import "./lib/nbvis.css";
import "./feature_importance.css";
import { arrayGetter, decode, maxAbs } from "./lib/arrays.js";
import { onThemeChange, themeColors } from "./lib/theme.js";
import { DIVERGING, fmt, gradientCss, lutIndex } from "./lib/colormap.js";
import { blit } from "./lib/draw.js";
import { numberBox } from "./lib/controls.js";
import { canvasPoint } from "./lib/pointer.js";
import { debugEnabled } from "./lib/debug.js";
import { colorbar, command, h, setTraits, setupView } from "./lib/view.js";

const BAR = "#4c78a8";
const SELECTED = "#f58518";
const REST = "#b0b0b0";
const MAP_SIZE = 240; // CSS pixels of the longer side of the importance map
const PLOTLY = "__nbvisPlotly"; // the page-wide promise of plotly.js

/**
 * plotly.js, loaded once per page from the kernel's shared PlotlyLibrary widget (gzipped; never from a CDN):
 * the first chart on the page starts the load, every later chart awaits the same promise.
 */
function loadPlotly(model) {
  if (globalThis.Plotly && globalThis.Plotly.react) return Promise.resolve(globalThis.Plotly);
  if (!globalThis[PLOTLY]) {
    globalThis[PLOTLY] = (async () => {
      const ref = String(model.get("_library") || "");
      const library = await model.widget_manager.get_model(ref.replace(/^IPY_MODEL_/, ""));
      const unzipped = new Blob([decode(library.get("source")).data]).stream().pipeThrough(new DecompressionStream("gzip"));
      const url = URL.createObjectURL(new Blob([await new Response(unzipped).arrayBuffer()], { type: "text/javascript" }));
      if (debugEnabled()) globalThis.__nbvisPlotlyLoads = (globalThis.__nbvisPlotlyLoads || 0) + 1; // read by the browser tests
      try {
        await import(/* webpackIgnore: true */ url); // the bundle sets window.Plotly
      } finally {
        URL.revokeObjectURL(url);
      }
      if (!globalThis.Plotly) throw new Error("plotly.js did not load");
      return globalThis.Plotly;
    })();
    globalThis[PLOTLY].catch(() => delete globalThis[PLOTLY]); // let a later chart try again
  }
  return globalThis[PLOTLY];
}

/** Feature indices by decreasing mean importance; features without a value yet go last. */
function ranking(stats, n) {
  const order = Array.from({ length: n }, (_, i) => i);
  const key = (i) => (Number.isFinite(stats[2 * i]) ? stats[2 * i] : -Infinity);
  return order.sort((a, b) => key(b) - key(a) || a - b);
}

// plotly draws a subset of HTML in every text (<b>, <br>, <a href>): names are text, so their
// markup characters go as entities, which plotly draws as the characters themselves.
function plotlyText(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function render({ model, el }) {
  const view = setupView(model, el, "feature-importance");
  const { on, listen, tooltip } = view;
  const stats = arrayGetter(model, "_stats");
  const image = arrayGetter(model, "_image");
  const map = arrayGetter(model, "_map");
  const owner = arrayGetter(model, "_owner");

  // ----- toolbar -----
  const method = h("select", {}, [
    h("option", { value: "permutation", textContent: "permutation" }),
    h("option", { value: "noise", textContent: "noise" }),
  ]);
  const scoring = h("select");
  const repeats = numberBox(listen, {
    current: () => model.get("n_repeats"),
    apply: (value) => setTraits(model, { n_repeats: value }),
    min: 1,
    max: 1000,
    width: "4em",
  });
  const topK = numberBox(listen, {
    current: () => model.get("top_k"),
    apply: (value) => setTraits(model, { top_k: value }),
    max: () => (model.get("feature_names") || []).length,
    title: "0 shows every feature",
  });
  const run = h("button", { textContent: "Run", title: "compute again" });
  const cancel = h("button", { textContent: "Cancel", title: "stop the computation" });
  const progress = h("progress", { max: 1, value: 0 });
  const progressText = h("span", { class: "nbvis-muted" });
  listen(method, "change", () => setTraits(model, { method: method.value }));
  listen(scoring, "change", () => setTraits(model, { scoring: scoring.value }));
  // A repeats value typed just before clicking Run is applied as the button is pressed (before
  // the box loses focus); that change already recomputes, so the click does not start a second run.
  let applied = false;
  listen(run, "pointerdown", () => {
    applied = repeats.commit();
  });
  listen(run, "click", () => {
    if (!applied) command(model, "start");
    applied = false;
  });
  listen(cancel, "click", () => command(model, "stop"));
  const bar = h("div", { class: "nbvis-bar" }, [
    h("strong", { textContent: "Feature importance" }),
    h("label", {}, ["method ", method]),
    h("label", {}, ["metric ", scoring]),
    h("label", {}, ["repeats ", repeats]),
    h("label", {}, ["top k ", topK]),
    run, cancel, progress, progressText,
  ]);
  const chart = h("div", { class: "nbvis-chart nbvis-fi-chart" }, [
    "loading plotly.js\u2026",
  ]);

  // ----- importance map over a sample image -----
  const canvas = h("canvas", { class: "nbvis-fi-map-canvas" });
  const sample = numberBox(listen, {
    current: () => model.get("sample"),
    apply: (value) => setTraits(model, { sample: value }),
    max: () => model.get("n_samples") - 1,
    width: "5em",
  });
  const legend = colorbar(gradientCss(DIVERGING));
  const mapPanel = h("div", { class: "nbvis-fi-map", hidden: true }, [
    h("div", { class: "nbvis-bar" }, [h("label", {}, ["sample ", sample]), legend.element]),
    canvas,
  ]);
  const row = h("div", { class: "nbvis-fi-row" }, [chart, mapPanel]);
  view.body.append(bar, row);

  let Plotly = null;
  let plotted = false;
  let bars = []; // feature index of each bar drawn (-1: the collapsed rest)

  function updateBar() {
    const options = model.get("scorings") || [];
    if (scoring.options.length !== options.length || [...scoring.options].some((o, i) => o.value !== options[i])) {
      scoring.replaceChildren(...options.map((name) => h("option", { value: name, textContent: name })));
    }
    scoring.value = model.get("scoring");
    method.value = model.get("method");
    repeats.show();
    topK.show();
    const state = model.get("state");
    const done = model.get("done");
    const total = model.get("total");
    progress.max = Math.max(1, total);
    progress.value = done;
    progressText.textContent = `${done} / ${total} \u00b7 ${state}`;
    cancel.disabled = state !== "running";
    run.disabled = state === "running";
    view.root.dataset.state = state;
  }

  function drawChart() {
    if (!Plotly) return;
    const s = stats();
    const names = model.get("feature_names") || [];
    if (!s) return;
    const n = names.length;
    const order = ranking(s.data, n);
    const k = model.get("top_k");
    const shown = k > 0 && n > k + 1 ? order.slice(0, k) : order;
    const rest = order.slice(shown.length);
    const selected = model.get("selected");
    const x = shown.map((i) => s.data[2 * i]);
    const err = shown.map((i) => s.data[2 * i + 1]);
    const labels = shown.map((i) => plotlyText(names[i]));
    const colors = shown.map((i) => (i === selected ? SELECTED : BAR));
    const hover = shown.map((i) => `${plotlyText(names[i])}<br>importance ${fmt(s.data[2 * i])} \u00b1 ${fmt(s.data[2 * i + 1])}`);
    bars = shown.slice();
    if (rest.length) {
      // the rest as one bar: their mean importance (never longer than the bars above it)
      let sum = 0;
      let count = 0;
      let most = -Infinity;
      for (const i of rest) {
        if (Number.isFinite(s.data[2 * i])) {
          sum += s.data[2 * i];
          count += 1;
          most = Math.max(most, s.data[2 * i]);
        }
      }
      x.push(count ? sum / count : NaN);
      err.push(0);
      labels.push(`${rest.length} others (mean)`);
      colors.push(REST);
      hover.push(`${rest.length} more features<br>mean ${fmt(sum / count)}, sum ${fmt(sum)}, largest ${fmt(most)}<br>click to show more`);
      bars.push(-1);
    }
    const metric = model.get("scoring");
    const theme = themeColors(view.root); // text, axes and grid follow the notebook's theme
    const trace = {
      type: "bar",
      orientation: "h",
      x,
      y: labels.map((_, i) => i),
      error_x: { type: "data", array: err, visible: true, color: theme.muted, thickness: 1.2, width: 3 },
      marker: { color: colors },
      hovertext: hover,
      hoverinfo: "text",
    };
    const layout = {
      height: 70 + 20 * Math.max(3, labels.length),
      margin: { l: 10, r: 20, t: 10, b: 50 },
      xaxis: {
        title: { text: `decrease in ${plotlyText(metric)} (baseline ${fmt(model.get("baseline"))})` },
        zeroline: true,
        zerolinecolor: theme.muted,
        gridcolor: theme.grid,
        linecolor: theme.border,
        color: theme.text,
      },
      yaxis: { tickvals: labels.map((_, i) => i), ticktext: labels, autorange: "reversed", automargin: true, color: theme.text },
      bargap: 0.25,
      showlegend: false,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { size: 11, color: theme.text },
      hoverlabel: { bgcolor: theme.panel, bordercolor: theme.border, font: { color: theme.strong } },
    };
    const config = { displayModeBar: false, responsive: true };
    view.timed(() => Plotly.react(chart, [trace], layout, config));
    if (!plotted) {
      plotted = true;
      chart.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        if (!point) return;
        const feature = bars[point.pointNumber];
        if (feature === -1) setTraits(model, { top_k: Math.min(n, 2 * Math.max(1, model.get("top_k"))) });
        else if (feature !== undefined) setTraits(model, { selected: feature });
      });
    }
    view.root.dataset.bars = String(labels.length);
  }

  let mapLayout = null;

  function drawMap() {
    const m = map();
    const img = image();
    const own = owner();
    mapPanel.hidden = !(m && img);
    if (!m || !img || !own) return;
    sample.show();
    const [H, W] = m.shape;
    const [C] = img.shape;
    const zoom = Math.max(1, Math.floor(MAP_SIZE / Math.max(H, W)));
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of img.data) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const span = hi > lo ? hi - lo : 1;
    const vmax = maxAbs(m.data);
    const picture = new ImageData(W, H);
    for (let p = 0; p < H * W; p++) {
      const rgb = [0, 0, 0];
      for (let c = 0; c < 3; c++) {
        let v;
        if (C === 3) v = img.data[c * H * W + p];
        else {
          v = 0;
          for (let cc = 0; cc < C; cc++) v += img.data[cc * H * W + p];
          v /= C;
        }
        rgb[c] = (255 * (v - lo)) / span;
      }
      const value = m.data[p];
      const alpha = Number.isFinite(value) && vmax > 0 ? Math.min(1, Math.abs(value) / vmax) * 0.85 : 0;
      const index = lutIndex(value, -vmax, vmax);
      for (let c = 0; c < 3; c++) {
        const color = index < 0 ? rgb[c] : DIVERGING[index * 3 + c];
        picture.data[p * 4 + c] = (1 - alpha) * rgb[c] + alpha * color;
      }
      picture.data[p * 4 + 3] = 255;
    }
    const ctx = blit(canvas, picture, zoom);
    // outline the pixels of the selected feature
    const selected = model.get("selected");
    if (selected !== null && selected !== undefined) {
      ctx.strokeStyle = SELECTED;
      ctx.lineWidth = 2;
      ctx.beginPath();
      const inside = (y, x) => y >= 0 && y < H && x >= 0 && x < W && own.data[y * W + x] === selected;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          if (!inside(y, x)) continue;
          const edges = [
            [y - 1, x, x, y, x + 1, y],
            [y + 1, x, x, y + 1, x + 1, y + 1],
            [y, x - 1, x, y, x, y + 1],
            [y, x + 1, x + 1, y, x + 1, y + 1],
          ];
          for (const [ny, nx, x0, y0, x1, y1] of edges) {
            if (inside(ny, nx)) continue;
            ctx.moveTo(x0 * zoom, y0 * zoom);
            ctx.lineTo(x1 * zoom, y1 * zoom);
          }
        }
      }
      ctx.stroke();
    }
    legend.update(fmt(-vmax), fmt(vmax), "importance");
    mapLayout = { H, W, zoom };
    view.root.dataset.map = `${H}x${W}`;
  }

  function pixelAt(event) {
    if (!mapLayout) return null;
    const [px, py] = canvasPoint(canvas, event);
    const x = Math.floor(px / mapLayout.zoom);
    const y = Math.floor(py / mapLayout.zoom);
    if (x < 0 || y < 0 || x >= mapLayout.W || y >= mapLayout.H) return null;
    return { x, y, feature: owner().data[y * mapLayout.W + x] };
  }

  listen(canvas, "mousemove", (event) => {
    const where = pixelAt(event);
    const s = stats();
    if (!where || where.feature < 0 || !s) return tooltip.hide();
    const name = (model.get("feature_names") || [])[where.feature];
    const lines = [name, `importance ${fmt(s.data[2 * where.feature])} \u00b1 ${fmt(s.data[2 * where.feature + 1])}`];
    tooltip.show(lines.join("\n"), event);
  });
  listen(canvas, "mouseleave", () => tooltip.hide());
  listen(canvas, "click", (event) => {
    const where = pixelAt(event);
    if (where && where.feature >= 0) setTraits(model, { selected: where.feature });
  });

  view.redrawOn(["_stats", "_map", "_owner", "_image", "feature_names", "top_k", "selected", "scoring", "scorings",
    "method", "n_repeats", "state", "done", "total", "baseline", "sample"], () => {
    updateBar();
    drawChart();
    drawMap();
  });
  updateBar();
  drawMap();
  let disposed = false;
  // plotly measures the chart's width: draw once the view is in the page
  const attached = new Promise((resolve) => {
    const check = () => (disposed ? null : chart.isConnected ? resolve() : requestAnimationFrame(check));
    check();
  });
  Promise.all([loadPlotly(model), attached]).then(
    ([lib]) => {
      if (disposed) return;
      Plotly = lib;
      chart.textContent = "";
      drawChart();
    },
    (error) => {
      chart.textContent = `could not load plotly.js: ${error}`;
    },
  );
  view.dispose(onThemeChange(() => drawChart()));
  view.dispose(() => {
    disposed = true;
    if (Plotly) Plotly.purge(chart);
  });
  return view.cleanup;
}

export default { render };
