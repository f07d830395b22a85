// Uploading an image file as the input: size-checked here, decoded and fitted by the kernel.
import { readUpload } from "../lib/upload.js";
import { h } from "../lib/view.js";

/** {element, update()}: a file input; the file's bytes go to the kernel at once (see sender.js). */
export function upload(ctx, sender) {
  const { model, view, status } = ctx;
  const fileInput = h("input", { type: "file", accept: "image/*", class: "nbvis-ah-file" });
  const element = h("label", {}, ["upload ", fileInput]);
  view.listen(fileInput, "change", async () => {
    const file = await readUpload(fileInput, model.get("upload_max_bytes"), status);
    if (file) sender.send("upload", [], file.bytes, { name: file.name }, { force: true }); // an upload always goes out
  });
  return { element, update() {} };
}
