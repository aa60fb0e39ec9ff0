// Reference images: drag and drop, paste, file picker and (optionally) URLs, shown as a
// strip of removable thumbnails. Files stay as File objects (sent as multipart uploads or,
// for JSON requests, read into data URIs); URLs are sent as they are.

import { h, icon, uid } from "./dom.js";

export const ACCEPTED_TYPES = ["image/png", "image/jpeg", "image/webp"];
export const MAX_FILE_BYTES = 20 * 1024 * 1024;

export function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export function dataUrlToFile(dataUrl, name) {
  const [head, payload] = dataUrl.split(",", 2);
  const type = /data:([^;]+)/.exec(head)?.[1] || "image/png";
  const binary = atob(payload || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    bytes[i] = binary.charCodeAt(i);
  }
  return new File([bytes], name, { type });
}

export function createRefPicker({ allowUrls = true, onChange = () => {}, onError = () => {},
  label = "Reference images" } = {}) {
  let max = 0;
  let items = [];
  const inputId = uid("refs-file");
  const urlId = uid("refs-url");
  const fileInput = h("input", {
    type: "file",
    id: inputId,
    class: "visually-hidden",
    accept: ACCEPTED_TYPES.join(","),
    multiple: true,
  });
  const browse = h("label", { class: "button small", for: inputId }, icon("upload"), "Browse");
  const counter = h("span", { class: "counter" });
  const hint = h("p", { class: "hint refs-hint" });
  const zone = h("div", { class: "dropzone", tabindex: "0", role: "group",
    "aria-label": label + ": drop or paste images here" },
  icon("image"),
  h("span", { class: "dropzone-text" }, "Drop images here, paste, or "),
  browse, fileInput);
  const urlInput = h("input", { type: "url", id: urlId, placeholder: "https://…/image.png",
    inputmode: "url", autocomplete: "off" });
  const urlButton = h("button", { type: "button", class: "button small" }, icon("link"), "Add URL");
  const urlRow = allowUrls
    ? h("div", { class: "url-row" },
      h("label", { class: "visually-hidden", for: urlId }, "Image URL"), urlInput, urlButton)
    : null;
  const strip = h("ul", { class: "ref-strip", "aria-label": label });
  const errorBox = h("p", { class: "field-error", hidden: true });
  const element = h("div", { class: "field refs", dataset: { field: "images" } },
    h("div", { class: "label-row" }, h("span", { class: "label" }, label), counter),
    zone, urlRow, strip, hint, errorBox);

  function render() {
    strip.replaceChildren(...items.map((item, index) => {
      const remove = h("button", { type: "button", class: "ref-remove",
        "aria-label": "Remove " + item.name, on: { click: () => removeAt(index) } }, icon("x"));
      return h("li", { class: "ref-item" },
        h("img", { src: item.preview, alt: item.name, loading: "lazy" }),
        index === 0 && items.length > 1 ? h("span", { class: "ref-badge" }, "1st") : null,
        remove);
    }));
    counter.textContent = max ? items.length + " / " + max : "";
    zone.classList.toggle("is-full", max > 0 && items.length >= max);
  }

  function changed() {
    render();
    onChange(items);
  }

  function removeAt(index) {
    const [gone] = items.splice(index, 1);
    if (gone && gone.source === "file") {
      URL.revokeObjectURL(gone.preview);
    }
    changed();
  }

  function room() {
    if (max && items.length >= max) {
      onError("This model takes at most " + max + (max === 1 ? " image." : " images."));
      return false;
    }
    return true;
  }

  function addFiles(files) {
    for (const file of files) {
      if (!ACCEPTED_TYPES.includes(file.type)) {
        onError(file.name + " is not a PNG, JPEG or WebP image.");
        continue;
      }
      if (file.size > MAX_FILE_BYTES) {
        onError(file.name + " is larger than 20 MB.");
        continue;
      }
      if (!room()) {
        break;
      }
      items.push({ source: "file", file, name: file.name || "pasted image",
        preview: URL.createObjectURL(file) });
    }
    changed();
  }

  function addUrl(text) {
    const value = String(text || "").trim();
    if (!value) {
      return;
    }
    if (!/^https?:\/\//i.test(value)) {
      onError("Image URLs must start with http:// or https://");
      return;
    }
    if (!room()) {
      return;
    }
    items.push({ source: "url", url: value, name: value.split("/").pop() || value,
      preview: value });
    changed();
  }

  fileInput.addEventListener("change", () => {
    addFiles([...fileInput.files]);
    fileInput.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("is-over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) {
      addFiles(files);
      return;
    }
    const url = event.dataTransfer?.getData("text/uri-list") || event.dataTransfer?.getData("text");
    if (url && allowUrls) {
      addUrl(url.split("\n")[0]);
    }
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  urlButton.addEventListener("click", () => {
    addUrl(urlInput.value);
    urlInput.value = "";
  });
  urlInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      urlButton.click();
    }
  });

  // Pasting an image anywhere on the page adds it (text pastes are left alone).
  function onPaste(event) {
    if (element.hidden || !element.isConnected) {
      return;
    }
    const files = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  }
  document.addEventListener("paste", onPaste);

  return {
    element,
    setMax(value) {
      max = value;
      render();
    },
    setHint(text) {
      hint.textContent = text;
    },
    setError(text) {
      errorBox.textContent = text || "";
      errorBox.hidden = !text;
    },
    items: () => [...items],
    count: () => items.length,
    files: () => items.filter((item) => item.source === "file").map((item) => item.file),
    addFiles,
    addUrl,
    clear() {
      for (const item of items) {
        if (item.source === "file") URL.revokeObjectURL(item.preview);
      }
      items = [];
      changed();
    },
    // For JSON requests: URLs as they are, files as data URIs.
    async references() {
      return Promise.all(items.map((item) =>
        item.source === "url" ? item.url : readAsDataUrl(item.file)));
    },
    // Restore from a saved draft (data URIs become files again).
    restore(references) {
      let index = 0;
      for (const ref of references || []) {
        index += 1;
        if (ref.startsWith("data:image/")) {
          addFiles([dataUrlToFile(ref, "restored-" + index + ".png")]);
        } else {
          addUrl(ref);
        }
      }
    },
  };
}
