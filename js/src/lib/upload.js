// Reading the image file a person picked in a file input, with the kernel's size limit.

/**
 * The chosen file as {name, bytes} (a Uint8Array), or null when none was chosen or it is over
 * `limit` bytes (then `status` says so). The input is cleared, so the same file can be picked again.
 */
export async function readUpload(fileInput, limit, status) {
  const file = fileInput.files && fileInput.files[0];
  if (!file) return null;
  try {
    if (file.size > limit) {
      status.textContent = `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is ${(limit / 2 ** 20).toFixed(1)} MiB`;
      return null;
    }
    status.textContent = "";
    return { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
  } finally {
    fileInput.value = "";
  }
}
