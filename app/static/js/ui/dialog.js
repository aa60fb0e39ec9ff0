// Modal confirmation with the native <dialog> (focus trapping and Escape come for free).

import { h } from "./dom.js";

export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "button", value: "cancel" }, "Cancel");
    const confirm = h("button", {
      type: "button",
      class: ["button", danger ? "danger" : "primary"],
      value: "ok",
    }, confirmLabel);
    const titleId = "dialog-title-" + Math.random().toString(36).slice(2);
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId },
      h("h2", { id: titleId, class: "dialog-title" }, title),
      message ? h("p", { class: "dialog-message" }, message) : null,
      h("div", { class: "dialog-actions" }, cancel, confirm),
    );
    let result = false;
    cancel.addEventListener("click", () => dialog.close());
    confirm.addEventListener("click", () => {
      result = true;
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    (danger ? cancel : confirm).focus();
  });
}
