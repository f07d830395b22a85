// Uploading an image file as the input: size-checked here, decoded and fitted by the kernel.
import { h } from "../lib/view.js";

/** {element, update()}: a file input; the file's bytes go to the kernel at once (see sender.js). */
export function upload(ctx, sender) {
  const { model, view, status } = ctx;
  const fileInput = h("input", { type: "file", accept: "image/*", class: "nbvis-ah-file" });
  const element = h("label", {}, ["upload ", fileInput]);
  view.listen(fileInput, "change", async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    const limit = model.get("upload_max_bytes");
    if (file.size > limit) {
      status.textContent = `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${(limit / 2 ** 20).toFixed(1)} MiB`;
      fileInput.value = "";
      return;
    }
    status.textContent = "";
    const bytes = new Uint8Array(await file.arrayBuffer());
    sender.send("upload", [], bytes, { name: file.name }, { force: true }); // an upload always goes out
    fileInput.value = "";
  });
  return { element, update() {} };
}
