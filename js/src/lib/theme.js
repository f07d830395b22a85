// The page's theme colors, read from JupyterLab's CSS variables (with light fallbacks, for pages
// without them: an export, nbconvert's HTML, VS Code). Colormaps stay fixed; text, axes, grid
// lines and chart backgrounds follow the theme.

const VARIABLES = {
  text: ["--jp-ui-font-color1", "#222"],
  strong: ["--jp-ui-font-color0", "#000"],
  muted: ["--jp-ui-font-color2", "#666"],
  background: ["--jp-layout-color0", "#fff"],
  panel: ["--jp-layout-color1", "#fff"],
  border: ["--jp-border-color1", "#bdbdbd"],
  grid: ["--jp-border-color2", "#e0e0e0"],
};

/** {text, strong, muted, background, panel, border, grid} as CSS colors, as seen from `el` (from the
 * page's <body> while `el` is not in the page yet: a detached element has no computed style). */
export function themeColors(el) {
  const colors = {};
  const page = typeof document !== "undefined" && document.body;
  const style = page ? getComputedStyle(el && el.isConnected ? el : document.body) : null;
  for (const [key, [name, fallback]] of Object.entries(VARIABLES)) {
    colors[key] = (style && style.getPropertyValue(name).trim()) || fallback;
  }
  return colors;
}

/** Call `fn` when JupyterLab switches theme (it marks <body> with the theme's name); returns the undo. */
export function onThemeChange(fn) {
  const observer = new MutationObserver(() => fn());
  observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light"] });
  return () => observer.disconnect();
}
