// The webcam as the input: frames at a modest rate (webcam_fps), only while the button is on, and
// only when the kernel has answered the previous frame.
import { h } from "../lib/view.js";

/** {element, update()}: the webcam button and its hidden <video>; the camera stops with the view. */
export function webcam(ctx, sender) {
  const { model, view, status } = ctx;
  const button = h("button", { textContent: "webcam" });
  const video = h("video", { playsInline: true, muted: true });
  const element = h("span", {}, [button, video]);
  const frame = new OffscreenCanvas(1, 1);
  let stream = null;
  let timer = null;
  let starting = false; // a camera has been asked for and not yet given
  let disposed = false;

  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    button.textContent = "webcam";
  }

  function grabFrame() {
    if (!stream || sender.inflight() || video.readyState < 2) return;
    const [, hgt, wid] = ctx.inputEntry().image;
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    const scale = Math.min(vw / wid, vh / hgt);
    frame.width = wid;
    frame.height = hgt;
    const g = frame.getContext("2d", { willReadFrequently: true });
    g.drawImage(video, (vw - wid * scale) / 2, (vh - hgt * scale) / 2, wid * scale, hgt * scale, 0, 0, wid, hgt);
    const rgba = g.getImageData(0, 0, wid, hgt).data;
    sender.send("webcam", [hgt, wid, 4], new Uint8Array(rgba.buffer));
  }

  view.listen(button, "click", async () => {
    if (stream) return stop();
    if (starting) return;
    starting = true;
    try {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
      if (disposed) return media.getTracks().forEach((t) => t.stop()); // the view went away while asking
      stream = media;
      video.srcObject = stream;
      await video.play();
      if (stream !== media) return; // stopped, or the view went away, while starting
      button.textContent = "stop webcam";
      const fps = Math.max(0.5, Math.min(15, model.get("webcam_fps")));
      timer = setInterval(grabFrame, 1000 / fps);
    } catch (err) {
      stop();
      if (!disposed) status.textContent = `webcam unavailable: ${err && err.message ? err.message : err}`;
    } finally {
      starting = false;
    }
  });
  view.dispose(() => {
    disposed = true;
    stop();
  });

  return {
    element,
    /** Shown where the input can be drawn on and the browser offers a camera. */
    update() {
      const camera = navigator.mediaDevices && navigator.mediaDevices.getUserMedia;
      element.style.display = ctx.drawable() && camera ? "" : "none";
    },
  };
}
