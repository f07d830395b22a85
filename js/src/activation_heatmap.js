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
import { keyboardNav } from "./heatmap/keyboard_nav.js";
import { layerPanels } from "./heatmap/layer_panels.js";
import { inputSender } from "./heatmap/sender.js";
import { topExamples } from "./heatmap/top_examples.js";
import { upload } from "./heatmap/upload.js";
import { webcam } from "./heatmap/webcam.js";
import { whyPanel } from "./heatmap/why_panel.js";
import { zoomPanel } from "./heatmap/zoom_panel.js";

// Traits that redraw the input, the layers and the why map (once per message from the kernel).
const REDRAW = ["_layout", "_input", "_acts", "labels", "selected", "_grad", "grad_caption", "wrt", "index",
  "dataset_size", "input_caption", "can_draw", "_seq_done"];
// A scan updates only the top examples: the layers are not redrawn for it.
const REDRAW_TOP = ["_top", "top_state", "top_progress"];

function render({ model, el }) {
  const view = setupView(model, el, "activation-heatmap");
  const ctx = heatmapContext(model, view);
  const sender = inputSender(model, view);

  // input sources
  const input = inputPanel(ctx, { busy: () => pen.active() });
  const pen = drawTool(ctx, input, sender);
  const sources = [datasetSlider(ctx), pen, upload(ctx, sender), webcam(ctx, sender)];

  // what the model does with the input
  const layers = layerPanels(ctx, {
    onChannel: (channel, field) => {
      zoom.show(channel);
      input.outline(field);
    },
    onLeave: () => {
      input.outline(null);
      zoom.show(null);
    },
  });
  const zoom = zoomPanel(ctx, layers);
  keyboardNav(ctx, layers);
  const why = whyPanel(ctx);
  const top = topExamples(ctx);

  const toolbar = h("div", { class: "nbvis-bar" }, [h("strong", { textContent: "activations" }), ...sources.map((s) => s.element), ctx.status]);
  const side = h("div", { class: "nbvis-ah-side" }, [input.element, why.element, zoom.element]);
  view.body.append(toolbar, h("div", { class: "nbvis-ah-main" }, [side, layers.element]), top.element);

  const draw = () => {
    view.timed(() =>
      ctx.guard(() => {
        layers.build();
        for (const source of sources) source.update();
        input.draw(pen.buffer());
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
