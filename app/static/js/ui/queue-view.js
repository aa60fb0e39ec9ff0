// The live queue: one row per task (status chip, progress bar, elapsed time, actions),
// updated in place so focus and hover survive the stream of SSE updates.

import {
  formatElapsed, isTerminal, progressView, statusLabel, statusTone, taskTitle,
} from "../lib/format.js";
import { defaultFilters, serializeFilters } from "../lib/filters.js";
import { h, icon, setVar } from "./dom.js";

export function resultHref(task) {
  return "/library" + serializeFilters({ ...defaultFilters(), kind: task.object || "video",
    open: task.id });
}

function thumbFor(task) {
  const media = (task.media || []).find((item) => item.thumbnail_url);
  if (media) {
    return h("img", { src: media.thumbnail_url, alt: "", loading: "lazy" });
  }
  return icon(task.object === "image" ? "image" : "video");
}

function buildRow(task, handlers) {
  const title = h("span", { class: "q-title" });
  const chip = h("span", { class: "chip" });
  const meta = h("span", { class: "q-meta" });
  const time = h("span", { class: "q-time" }, icon("clock"), h("span", { class: "q-elapsed" }));
  const fill = h("span", { class: "progress-fill" });
  const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100" }, fill);
  const progressLabel = h("span", { class: "q-progress-label" });
  const error = h("p", { class: "q-error", hidden: true });
  const cancel = h("button", { type: "button", class: "button small ghost", dataset: { act: "cancel" },
    on: { click: () => handlers.cancel(row.task) } }, icon("stop"), "Cancel");
  const retry = h("button", { type: "button", class: "button small ghost", dataset: { act: "retry" },
    on: { click: () => handlers.retry(row.task) } }, icon("retry"), "Retry");
  const open = h("a", { class: "button small", dataset: { act: "open" } }, icon("open"), "Open");
  const thumb = h("div", { class: "q-thumb" });
  const element = h("li", { class: "q-item", dataset: { id: task.id } },
    thumb,
    h("div", { class: "q-body" },
      h("div", { class: "q-top" }, title, chip),
      h("div", { class: "q-line" }, meta, time),
      h("div", { class: "q-progress" }, bar, progressLabel),
      error),
    h("div", { class: "q-actions" }, cancel, retry, open));
  const row = { element, task, title, chip, meta, bar, fill, progressLabel, error, cancel, retry,
    open, thumb, time, thumbKey: null };
  return row;
}

function updateRow(row, task) {
  row.task = task;
  const name = taskTitle(task, 70);
  row.title.textContent = name;
  row.title.title = task.prompt || name;
  row.chip.className = "chip tone-" + statusTone(task.status);
  row.chip.textContent = statusLabel(task.status);
  row.meta.textContent = task.model || "";
  row.time.querySelector(".q-elapsed").textContent = formatElapsed(task);
  const view = progressView(task);
  setVar(row.fill, "--value", view.percent + "%");
  row.bar.classList.toggle("is-indeterminate", view.indeterminate);
  row.bar.className = "progress tone-" + view.tone + (view.indeterminate ? " is-indeterminate" : "");
  row.bar.setAttribute("aria-label", "Progress of " + name);
  if (view.indeterminate) {
    row.bar.removeAttribute("aria-valuenow");
  } else {
    row.bar.setAttribute("aria-valuenow", String(view.percent));
  }
  row.bar.setAttribute("aria-valuetext", view.label);
  row.progressLabel.textContent = view.label;
  const message = task.error ? task.error.message || task.error.code : "";
  row.error.textContent = message;
  row.error.hidden = !(task.status === "failed" && message);
  const terminal = isTerminal(task.status);
  row.cancel.hidden = terminal;
  row.retry.hidden = !terminal || task.status === "completed";
  row.open.hidden = task.status !== "completed";
  row.open.href = resultHref(task);
  row.open.setAttribute("aria-label", "Open " + name);
  row.cancel.setAttribute("aria-label", "Cancel " + name);
  row.retry.setAttribute("aria-label", "Retry " + name);
  row.element.dataset.status = task.status;
  const key = (task.media || []).map((m) => m.thumbnail_url).join("|") + task.object;
  if (key !== row.thumbKey) {
    row.thumbKey = key;
    row.thumb.replaceChildren(thumbFor(task));
  }
}

export function createQueueView(list, handlers) {
  const rows = new Map();
  return {
    render(tasks) {
      const seen = new Set();
      tasks.forEach((task, index) => {
        seen.add(task.id);
        let row = rows.get(task.id);
        if (!row) {
          row = buildRow(task, handlers);
          rows.set(task.id, row);
        }
        updateRow(row, task);
        if (list.children[index] !== row.element) {
          list.insertBefore(row.element, list.children[index] || null);
        }
      });
      for (const [id, row] of rows) {
        if (!seen.has(id)) {
          row.element.remove();
          rows.delete(id);
        }
      }
    },
    // Once a second: only the clocks of running tasks move.
    tick() {
      for (const row of rows.values()) {
        if (!isTerminal(row.task.status)) {
          row.time.querySelector(".q-elapsed").textContent = formatElapsed(row.task);
        }
      }
    },
  };
}
