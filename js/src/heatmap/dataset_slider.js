// Picking a dataset sample as the input: a slider (throttled while dragging) and an index box.
import { h, setTraits } from "../lib/view.js";

const THROTTLE_MS = 40;

/** {element, update()}: shown when the view has a dataset; sets the `index` trait. */
export function datasetSlider(ctx) {
  const { model, view } = ctx;
  const { listen } = view;
  const slider = h("input", { type: "range", min: 0, step: 1, class: "nbvis-ah-slider" });
  const indexBox = h("input", { type: "number", min: 0, step: 1, class: "nbvis-ah-index" });
  const element = h("label", { class: "nbvis-ah-dataset" }, ["sample ", slider, indexBox]);

  let timer = null;
  listen(slider, "input", () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      setTraits(model, { index: Number(slider.value) });
    }, THROTTLE_MS);
  });
  listen(slider, "change", () => setTraits(model, { index: Number(slider.value) }));
  listen(indexBox, "change", () => {
    const n = model.get("dataset_size");
    const i = Math.max(0, Math.min(n - 1, Math.floor(Number(indexBox.value) || 0)));
    indexBox.value = String(i);
    setTraits(model, { index: i });
  });
  view.dispose(() => timer && clearTimeout(timer));

  return {
    element,
    update() {
      const size = model.get("dataset_size");
      element.style.display = size > 0 ? "" : "none";
      slider.max = String(Math.max(0, size - 1));
      indexBox.max = String(Math.max(0, size - 1));
      if (document.activeElement !== slider) slider.value = String(model.get("index"));
      if (document.activeElement !== indexBox) indexBox.value = String(model.get("index"));
    },
  };
}
