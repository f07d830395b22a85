// Where the pointer is, in a canvas's own pixels (whatever its CSS size), and hover wiring.

/** The point of a mouse/pointer event in `canvas` pixels: [x, y]. */
export function canvasPoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (canvas.width / rect.width), (event.clientY - rect.top) * (canvas.height / rect.height)];
}

/**
 * A tooltip on `canvas`: `text(event)` gives the text for the pointer's place (null hides the tip).
 * `listen` is the view's (so cleanup removes the listeners); `leave` runs when the pointer goes.
 */
export function hoverTip(listen, tooltip, canvas, text, leave = null) {
  listen(canvas, "mousemove", (event) => {
    const t = text(event);
    if (t == null) tooltip.hide();
    else tooltip.show(t, event);
  });
  listen(canvas, "mouseleave", () => {
    tooltip.hide();
    if (leave) leave();
  });
}
