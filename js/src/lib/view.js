// Scaffolding every view shares: the root element with its style, the error area under the
// view, a floating tooltip, the PNG download and snapshot answers, the static mode of an export,
// and one place that undoes every listener when the view goes away.
import { answerSnapshot, disableKernelControls, downloadPng, isStatic } from "./export.js";

const CSS = `
.nbvis { font: 12px/1.4 var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222); }
.nbvis .nbvis-bar { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; margin: 4px 0 6px; }
.nbvis .nbvis-bar label { display: inline-flex; gap: 4px; align-items: center; }
.nbvis select, .nbvis input, .nbvis button { font: inherit; width: auto; }
.nbvis canvas { image-rendering: pixelated; display: block; }
.nbvis .nbvis-error { display: none; white-space: pre-wrap; color: #a00; background: #fdecea;
  border: 1px solid #f5c2c0; border-radius: 3px; padding: 4px 8px; margin-top: 6px; }
.nbvis .nbvis-error.nbvis-shown { display: block; }
.nbvis-tooltip { position: fixed; z-index: 10000; pointer-events: none; display: none;
  background: var(--jp-inverse-layout-color1, rgba(20, 20, 20, 0.9)); color: var(--jp-ui-inverse-font-color0, #fff);
  padding: 3px 6px; border-radius: 3px; opacity: 0.94;
  font: 11px/1.35 var(--jp-code-font-family, monospace); white-space: pre; }
.nbvis .nbvis-legend { display: inline-flex; align-items: center; gap: 6px; }
.nbvis .nbvis-colorbar { width: 120px; height: 10px; border: 1px solid #8888; }
.nbvis .nbvis-muted { color: var(--jp-ui-font-color2, #666); }
.nbvis progress { width: 160px; }
.nbvis .nbvis-footer { display: flex; justify-content: flex-end; gap: 8px; margin-top: 4px; }
.nbvis .nbvis-download { font-size: 11px; padding: 0 6px; }
.nbvis.nbvis-static button:disabled, .nbvis.nbvis-static select:disabled, .nbvis.nbvis-static input:disabled { opacity: 0.45; cursor: not-allowed; }
`;

function ensureStyle() {
  if (document.getElementById("nbvis-style")) return;
  const style = document.createElement("style");
  style.id = "nbvis-style";
  style.textContent = CSS;
  document.head.appendChild(style);
}

/** Create an element with attributes/properties and children. */
export function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of [].concat(children)) {
    if (child != null) node.append(child);
  }
  return node;
}

/**
 * Set up a view in `el`: returns {root, body, on, listen, redrawOn, cleanup, tooltip, dispose}.
 * `on(name, fn)` observes a trait; `listen(target, type, fn)` a DOM event; both are undone by cleanup().
 * `redrawOn(names, fn)` calls fn once per batch of changes to those traits.
 */
export function setupView(model, el, kind) {
  ensureStyle();
  const disposers = [];
  const root = h("div", { class: `nbvis nbvis-${kind}` });
  const body = h("div");
  const error = h("div", { class: "nbvis-error" });
  const download = h("button", { class: "nbvis-download nbvis-local", textContent: "\u2913 PNG", title: "download what is drawn as a PNG image" });
  const footer = h("div", { class: "nbvis-footer" }, [download]);
  root.append(body, error, footer);
  el.append(root);

  const on = (name, fn) => {
    const event = name.startsWith("msg:") ? name : `change:${name}`;
    model.on(event, fn);
    disposers.push(() => model.off(event, fn));
  };
  const listen = (target, type, fn, options) => {
    target.addEventListener(type, fn, options);
    disposers.push(() => target.removeEventListener(type, fn, options));
  };

  const showError = () => {
    const text = model.get("error") || "";
    error.textContent = text;
    error.classList.toggle("nbvis-shown", text.length > 0);
  };
  on("error", showError);
  showError();

  const tip = h("div", { class: "nbvis-tooltip" });
  document.body.append(tip);
  disposers.push(() => tip.remove());
  const tooltip = {
    show(text, event) {
      tip.textContent = text;
      tip.style.display = "block";
      tip.style.left = `${event.clientX + 14}px`;
      tip.style.top = `${event.clientY + 14}px`;
    },
    hide() {
      tip.style.display = "none";
    },
    element: tip,
  };

  listen(download, "click", () => downloadPng(root, `nbvis-${kind}`).catch((e) => console.error(e)));
  on("msg:custom", (content) => {
    if (content && content.type === "snapshot") answerSnapshot(model, el, root, content);
  });
  if (isStatic(model)) {
    root.classList.add("nbvis-static");
    root.dataset.static = "1";
    footer.prepend(h("span", { class: "nbvis-muted", textContent: "static export: the controls need the Python kernel" }));
    disposers.push(disableKernelControls(root));
  } else {
    // Python counts the views shown, so that snapshot() knows whether any front end can answer.
    model.send({ type: "view", attached: true });
    disposers.push(() => model.send({ type: "view", attached: false }));
  }

  const cleanup = () => {
    while (disposers.length) {
      try {
        disposers.pop()();
      } catch (e) {
        console.error(e);
      }
    }
    root.remove();
  };
  // One message from Python changes several traits at once: call `fn` once after all of them.
  const redrawOn = (names, fn) => {
    let pending = false;
    const schedule = () => {
      if (pending) return;
      pending = true;
      queueMicrotask(() => {
        pending = false;
        fn();
      });
    };
    for (const name of names) on(name, schedule);
    return schedule;
  };
  return { root, body, on, listen, cleanup, tooltip, redrawOn, dispose: (fn) => disposers.push(fn) };
}

/** Send a command to the Python side (handled by NbvisWidget._cmd_<name>). */
export function command(model, name, args = {}) {
  if (isStatic(model)) return;
  model.send({ type: "command", name, args });
}

/** Set traits from the view and sync them to Python (nothing in a static export: no kernel). */
export function setTraits(model, values) {
  if (isStatic(model)) return;
  for (const [key, value] of Object.entries(values)) model.set(key, value);
  model.save_changes();
}

/** A <select> bound to a trait. */
export function boundSelect(model, on, name, options, label) {
  const select = h("select", {}, options.map(([value, text]) => h("option", { value, textContent: text })));
  select.value = String(model.get(name));
  select.addEventListener("change", () => {
    const current = model.get(name);
    setTraits(model, { [name]: typeof current === "number" ? Number(select.value) : select.value });
  });
  on(name, () => {
    select.value = String(model.get(name));
  });
  return label ? h("label", {}, [label, select]) : select;
}

/** A checkbox bound to a boolean trait. */
export function boundCheckbox(model, on, name, label) {
  const box = h("input", { type: "checkbox", checked: !!model.get(name) });
  box.addEventListener("change", () => setTraits(model, { [name]: box.checked }));
  on(name, () => {
    box.checked = !!model.get(name);
  });
  return h("label", {}, [box, label]);
}

/** A colorbar legend element; call update(lo, hi, caption). */
export function colorbar(gradient) {
  const lo = h("span");
  const hi = h("span");
  const caption = h("span", { class: "nbvis-muted" });
  const bar = h("span", { class: "nbvis-colorbar", style: { background: gradient } });
  const element = h("span", { class: "nbvis-legend" }, [lo, bar, hi, caption]);
  return {
    element,
    update(loText, hiText, captionText = "") {
      lo.textContent = loText;
      hi.textContent = hiText;
      caption.textContent = captionText;
    },
  };
}

/** Put a native-resolution ImageData onto `canvas`, scaled by `zoom` without smoothing; returns its 2D context. */
export function blit(canvas, image, zoom) {
  const off = new OffscreenCanvas(image.width, image.height);
  off.getContext("2d").putImageData(image, 0, 0);
  canvas.width = image.width * zoom;
  canvas.height = image.height * zoom;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  return ctx;
}
