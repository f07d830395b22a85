// Scaffolding every view shares: the root element, the error area under the view, a floating
// tooltip, draw instrumentation, the PNG download and snapshot answers, the static mode of an
// export, and one place that undoes every listener when the view goes away.
// The style lives in nbvis.css (each view imports it; the build bundles it into static/<view>.css,
// which the widget class loads as anywidget's `_css`).
import { instrument } from "./debug.js";
import { answerSnapshot, disableKernelControls, downloadPng, isStatic, kernelGone } from "./export.js";

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
 * Set up a view in `el`: returns {root, body, on, listen, redrawOn, cleanup, tooltip, dispose, timed, stats}.
 * `on(name, fn)` observes a trait; `listen(target, type, fn)` a DOM event; both are undone by cleanup().
 * `redrawOn(names, fn)` calls fn once per batch of changes to those traits. `timed(fn)` runs a
 * draw and counts it (data-draws; its time when debugging, see debug.js).
 */
export function setupView(model, el, kind) {
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
  if (isStatic(model) || kernelGone(el)) {
    // no kernel: hovering still works, what would need the kernel is disabled and says so
    root.classList.add("nbvis-static");
    root.dataset.static = "1";
    const why = isStatic(model) ? "static export" : "no kernel (a saved page)";
    footer.prepend(h("span", { class: "nbvis-muted", textContent: `${why}: the controls need the Python kernel` }));
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
  const stats = instrument(root);
  const timed = (fn) => {
    const start = performance.now();
    try {
      return fn();
    } finally {
      stats.drew(performance.now() - start);
    }
  };
  return { root, body, on, listen, cleanup, tooltip, redrawOn, timed, stats, dispose: (fn) => disposers.push(fn) };
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
