// ActivationHeatmap view: the input (drawable), every layer's activations, the selected unit's
// why map and top examples. Hover reads values already in the browser: no kernel message.
// Each part is a function in heatmap/ (see ARCHITECTURE.md); render() puts them together.
import "./lib/nbvis.css";
import "./heatmap/heatmap.css";
import { h, setupView } from "./lib/view.js";
import { heatmapContext } from "./heatmap/context.js";
import { datasetSlider } from "./heatmap/dataset_slider.js";
import { drawTool } from "./heatmap/draw_tool.js";
import { inputPanel } from "./heatmap/input_panel.js";
import { receptiveField } from "./heatmap/geometry.js";
import { keyboardNav } from "./heatmap/keyboard_nav.js";
import { layerPanels } from "./heatmap/layer_panels.js";
import { inputSender } from "./heatmap/sender.js";
import { topExamples } from "./heatmap/top_examples.js";
import { upload } from "./heatmap/upload.js";
import { webcam } from "./heatmap/webcam.js";
import { whyPanel } from "./heatmap/why_panel.js";
import { zoomPanel } from "./heatmap/zoom_panel.js";

// Traits that redraw the input, the layers and the why map (once per message from the kernel).
const REDRAW = ["_layout", "_input", "_acts", "labels", "selected", "_grad", "grad_caption", "wrt", "reduce", "index",
  "dataset_size", "input_caption", "can_draw", "_seq_done"];
// A scan updates only the top examples: the layers are not redrawn for it.
const REDRAW_TOP = ["_top", "top_state", "top_progress"];

// CSS px of the input, the enlarged channel and the why map in the Explorer's dashboard
const DASH_IMAGE = 168;

function render({ model, el }) {
  const view = setupView(model, el, "activation-heatmap");
  const ctx = heatmapContext(model, view);
  const sender = inputSender(model, view);
  const dashboard = !!model.get("dashboard");
  const width = dashboard ? DASH_IMAGE : undefined;

  // input sources
  const input = inputPanel(ctx, { busy: () => pen.active(), width });
  const pen = drawTool(ctx, input, sender);
  const sources = [datasetSlider(ctx), pen, upload(ctx, sender), webcam(ctx, sender)];

  // what the model does with the input
  const layers = layerPanels(ctx, {
    compact: dashboard,
    onChannel: (channel, field) => {
      zoom.show(channel);
      input.outline(field);
    },
    onLeave: () => {
      input.outline(null);
      zoom.show(null);
    },
  });
  const zoom = zoomPanel(ctx, layers, { width, onField: (field) => input.outline(field), onLeave: () => input.outline(null) });
  keyboardNav(ctx, layers);
  const why = whyPanel(ctx, { width });
  const top = topExamples(ctx, { compact: dashboard });

  if (dashboard) {
    // the Deep Visualization Toolbox's screen: the input at the left, the layers in the middle,
    // the selected unit at the right (the Explorer puts its weights and preferred input beside it)
    view.root.classList.add("nbvis-ah-dashboard");
    const controls = h("div", { class: "nbvis-ah-controls" }, [...sources.map((s) => s.element), ctx.status]);
    view.body.append(
      h("div", { class: "nbvis-ah-dash" }, [
        h("div", { class: "nbvis-ah-col nbvis-ah-col-input" }, [controls, input.element, zoom.element]),
        h("div", { class: "nbvis-ah-col nbvis-ah-col-layers" }, [layers.element]),
        h("div", { class: "nbvis-ah-col nbvis-ah-col-unit" }, [why.element, top.element]),
      ]),
    );
  } else {
    const toolbar = h("div", { class: "nbvis-bar" }, [h("strong", { textContent: "activations" }), ...sources.map((s) => s.element), ctx.status]);
    const side = h("div", { class: "nbvis-ah-side" }, [input.element, why.element, zoom.element]);
    view.body.append(toolbar, h("div", { class: "nbvis-ah-main" }, [side, layers.element]), top.element);
  }

  // what the selected position (a unit [c, y, x]) sees, outlined on the input
  const selectedField = () => {
    const sel = ctx.selected();
    const position = ctx.selectedPosition();
    const entry = position && ctx.entryOf(sel[0]);
    return entry && entry.kind === "conv" ? receptiveField(entry, position[0], position[1], 1) : null;
  };

  const draw = () => {
    view.timed(() =>
      ctx.guard(() => {
        layers.build();
        for (const source of sources) source.update();
        input.draw(pen.buffer());
        input.mark(selectedField());
        layers.draw();
        why.draw();
        zoom.draw();
        top.draw();
      }),
    );
    sender.noteRoundTrip();
  };
  view.on("_seq_done", sender.ack);
  view.redrawOn(REDRAW, () => {
    pen.settle(); // the kernel has caught up with the drawing
    draw();
  });
  view.redrawOn(REDRAW_TOP, () => ctx.guard(top.draw));
  draw();
  return view.cleanup;
}

export default { render };
