// Toasts: short notices in a polite live region, with an optional action link or button.

import { h, icon } from "./dom.js";

function region() {
  let container = document.getElementById("toasts");
  if (!container) {
    container = h("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(container);
  }
  return container;
}

export function toast(message, { tone = "info", action = null, timeout = 6000 } = {}) {
  const close = h("button", {
    type: "button",
    class: "icon-button toast-close",
    "aria-label": "Dismiss",
  }, icon("x"));
  let actionEl = null;
  if (action && action.href) {
    actionEl = h("a", { class: "toast-action", href: action.href }, action.label);
  } else if (action && action.onClick) {
    actionEl = h("button", { type: "button", class: "toast-action", on: { click: action.onClick } },
      action.label);
  }
  const glyph = { success: "check", danger: "alert", warning: "alert" }[tone] || "info";
  const item = h("div", { class: ["toast", "tone-" + tone] },
    h("span", { class: "toast-icon" }, icon(glyph)),
    h("span", { class: "toast-text" }, message),
    actionEl,
    close,
  );
  const remove = () => {
    item.classList.add("is-leaving");
    setTimeout(() => item.remove(), 200);
  };
  close.addEventListener("click", remove);
  region().append(item);
  if (timeout) {
    setTimeout(remove, timeout);
  }
  return item;
}
