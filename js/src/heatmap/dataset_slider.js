// Picking a dataset sample as the input: a slider (throttled while dragging; arrow keys step it)
// and an index box (Enter applies, clamped to the dataset).
import { numberBox, slider as rangeSlider } from "../lib/controls.js";
import { h, setTraits } from "../lib/view.js";

const THROTTLE_MS = 40;

/** {element, update()}: shown when the view has a dataset; sets the `index` trait. */
export function datasetSlider(ctx) {
  const { model, view } = ctx;
  const { listen } = view;
  const last = () => Math.max(0, model.get("dataset_size") - 1);
  const pick = (index) => setTraits(model, { index });
  let timer = null;
  const slider = rangeSlider(listen, {
    current: () => model.get("index"),
    apply: pick,
    max: last,
    width: null,
    className: "nbvis-ah-slider",
    preview: (index) => {
      if (timer || index === null || index === model.get("index")) return;
      timer = setTimeout(() => {
        timer = null;
        if (Number(slider.value) !== model.get("index")) pick(Number(slider.value));
      }, THROTTLE_MS);
    },
  });
  const indexBox = numberBox(listen, { current: () => model.get("index"), apply: pick, max: last, width: null, className: "nbvis-ah-index" });
  const element = h("label", { class: "nbvis-ah-dataset" }, ["sample ", slider, indexBox]);
  view.dispose(() => timer && clearTimeout(timer));

  return {
    element,
    update() {
      element.style.display = model.get("dataset_size") > 0 ? "" : "none";
      if (document.activeElement !== slider) slider.show();
      indexBox.show();
    },
  };
}
