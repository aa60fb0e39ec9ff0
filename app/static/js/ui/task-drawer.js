// The library's detail drawer: media, prompt (copy), parameters, timings, error, download,
// retry, delete, organise (title, tags, favourite) and a link to the request log.

import { api, errorMessage } from "./api.js";
import { h, icon } from "./dom.js";
import { confirmDialog } from "./dialog.js";
import { toast } from "./toast.js";
import {
  describeParams, formatBytes, formatDateTime, formatDuration, elapsedSeconds, isTerminal,
  statusLabel, statusTone, taskTitle,
} from "../lib/format.js";

function section(title, ...children) {
  return h("section", { class: "drawer-section" }, h("h3", {}, title), ...children);
}

function kv(rows) {
  return h("dl", { class: "kv" }, rows.filter(Boolean).flatMap(([key, value]) =>
    [h("dt", {}, key), h("dd", {}, value)]));
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_error) {
    // Clipboard API unavailable (http, permissions): fall back to a hidden textarea.
    const area = h("textarea", { class: "visually-hidden", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

// The request that created the task: a POST to /api/v1/{kind}s within seconds of created_at.
export function requestLogHref(task, isAdmin) {
  const created = Date.parse(task.created_at);
  const params = new URLSearchParams({
    tab: "logs",
    method: "POST",
    path: `/api/v1/${task.object}s`,
    after: new Date(created - 15000).toISOString(),
    before: new Date(created + 15000).toISOString(),
  });
  return (isAdmin ? "/admin?" : "/account?") + params.toString() + (isAdmin ? "" : "#requests");
}

function mediaView(task) {
  const media = (task.media || []).find((item) => item.state === "stored");
  if (task.status !== "completed" || !media) {
    return null;
  }
  const src = `/api/v1/${task.object}s/${task.id}/content`;
  const element = task.object === "video"
    ? h("video", { controls: true, preload: "metadata", playsInline: true, src,
      poster: media.thumbnail_url ? `/api/v1/videos/${task.id}/thumbnail` : null,
      "aria-label": "Video: " + taskTitle(task) })
    : h("img", { src, alt: taskTitle(task) });
  return h("div", { class: "drawer-media" }, element);
}

export function openDrawer(task, { models = [], isAdmin = false, onClose = () => {},
  onChanged = () => {}, onDeleted = () => {} } = {}) {
  const previousFocus = document.activeElement;
  const model = models.find((item) => item.id === task.model);
  const titleId = "drawer-title";
  const close = h("button", { type: "button", class: "icon-button", "aria-label": "Close details" },
    icon("x"));
  const heading = h("h2", { id: titleId }, taskTitle(task));
  const media = (task.media || [])[0];
  const stored = (task.media || []).find((item) => item.state === "stored");

  // Organise: title, tags, favourite.
  const titleInput = h("input", { value: task.title || "", maxlength: "200",
    id: "drawer-title-input", placeholder: taskTitle(task) });
  const tagsInput = h("input", { value: (task.tags || []).join(", "), id: "drawer-tags",
    placeholder: "e.g. storyboard, rain", autocomplete: "off" });
  const favorite = h("input", { type: "checkbox", id: "drawer-favorite", checked: task.favorite });
  const save = h("button", { type: "submit", class: "button primary small" }, "Save");
  const organise = h("form", { class: "form-grid" },
    h("div", { class: "field" }, h("label", { for: "drawer-title-input" }, "Title"), titleInput),
    h("div", { class: "field" }, h("label", { for: "drawer-tags" }, "Tags"), tagsInput,
      h("p", { class: "hint" }, "Comma-separated.")),
    h("label", { class: "check" }, favorite, "Favourite"),
    h("div", {}, save));
  organise.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    try {
      const tags = tagsInput.value.split(",").map((t) => t.trim()).filter(Boolean);
      const updated = await api.patch(`/api/v1/${task.object}s/${task.id}`, {
        title: titleInput.value.trim() || null,
        tags,
        favorite: favorite.checked,
      });
      Object.assign(task, updated);
      heading.textContent = taskTitle(task);
      toast("Saved", { tone: "success", timeout: 2500 });
      onChanged(task);
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    } finally {
      save.disabled = false;
    }
  });

  const copy = h("button", { type: "button", class: "button small" }, icon("copy"), "Copy prompt");
  copy.addEventListener("click", async () => {
    const ok = await copyText(task.prompt || "");
    toast(ok ? "Prompt copied" : "Could not copy", { tone: ok ? "success" : "danger",
      timeout: 2500 });
  });

  const retry = h("button", { type: "button", class: "button small" }, icon("retry"), "Retry");
  retry.addEventListener("click", async () => {
    try {
      const clone = await api.post(`/api/v1/${task.object}s/${task.id}/retry`);
      toast("Retry queued", { tone: "success",
        action: { label: "Watch", href: task.object === "image" ? "/image" : "/" } });
      onChanged(clone);
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });

  const remove = h("button", { type: "button", class: "button small danger-text" }, icon("trash"),
    "Delete");
  remove.addEventListener("click", async () => {
    const ok = await confirmDialog({ title: "Delete this " + task.object + "?",
      message: "Its stored files are removed. This cannot be undone.", confirmLabel: "Delete",
      danger: true });
    if (!ok) return;
    try {
      await api.del(`/api/v1/${task.object}s/${task.id}`);
      toast("Deleted", { tone: "success" });
      closeDrawer(false);
      onDeleted(task);
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });

  const actions = h("div", { class: "drawer-actions" },
    stored ? h("a", { class: "button small primary",
      href: `/api/v1/${task.object}s/${task.id}/content?download=1`, download: "" },
    icon("download"), "Download") : null,
    task.prompt ? copy : null,
    isTerminal(task.status) ? retry : null,
    h("a", { class: "button small ghost", href: requestLogHref(task, isAdmin) }, icon("list"),
      "Request log"),
    remove);

  const took = isTerminal(task.status) && task.completed_at
    ? formatDuration(elapsedSeconds(task)) : null;
  const body = h("div", { class: "drawer-body" },
    mediaView(task),
    h("div", { class: "drawer-actions" },
      h("span", { class: "chip tone-" + statusTone(task.status) }, statusLabel(task.status)),
      h("span", { class: "chip tone-accent" }, model?.display_name || task.model),
      task.favorite ? h("span", { class: "chip tone-warning" }, "★ Favourite") : null),
    actions,
    task.error ? h("div", { class: "alert tone-danger", role: "note" },
      h("strong", {}, task.error.code), h("span", {}, task.error.message)) : null,
    media && media.state !== "stored" ? notStored(task, media, onChanged) : null,
    section("Prompt", h("div", { class: "prompt-box" }, task.prompt || "—")),
    section("Organise", organise),
    section("Parameters", describeParams(task.params, model).length
      ? kv(describeParams(task.params, model).map((p) => [p.label, p.value]))
      : h("p", { class: "muted" }, "Model defaults.")),
    section("Timings", kv([
      ["Created", formatDateTime(task.created_at)],
      task.submitted_at ? ["Submitted", formatDateTime(task.submitted_at)] : null,
      task.started_at ? ["Started", formatDateTime(task.started_at)] : null,
      task.completed_at ? ["Finished", formatDateTime(task.completed_at)] : null,
      took ? ["Time to result", took] : null,
    ])),
    stored ? section("File", kv([
      ["Type", stored.content_type || "—"],
      ["Size", formatBytes(stored.bytes)],
      stored.width ? ["Dimensions", stored.width + " × " + stored.height] : null,
      stored.duration_seconds ? ["Duration", stored.duration_seconds.toFixed(1) + " s"] : null,
      task.media.length > 1 ? ["Files", String(task.media.length)] : null,
    ])) : null,
    section("Identifiers", kv([["Task", h("code", {}, task.id)],
      task.batch_id ? ["Batch", h("code", {}, task.batch_id)] : null,
      task.retry_of ? ["Retry of", h("code", {}, task.retry_of)] : null])),
  );
  const panel = h("aside", { class: "drawer", role: "dialog", "aria-modal": "true",
    "aria-labelledby": titleId },
  h("div", { class: "drawer-head" }, heading, close), body);
  const backdrop = h("div", { class: "drawer-backdrop" });
  document.body.append(backdrop, panel);
  document.body.classList.add("has-drawer");

  function onKey(event) {
    if (event.key === "Escape" && !document.querySelector("dialog[open]")) {
      closeDrawer(true);
    } else if (event.key === "Tab") {
      // Keep keyboard focus inside the drawer while it is open.
      const focusable = [...panel.querySelectorAll(
        "a[href], button:not([disabled]), input, select, textarea, video[controls]")];
      const first = focusable[0];
      const last = focusable[focusable.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    }
  }

  function closeDrawer(notify = true) {
    document.removeEventListener("keydown", onKey);
    panel.querySelector("video")?.pause();
    panel.remove();
    backdrop.remove();
    document.body.classList.remove("has-drawer");
    if (notify) {
      onClose();
    } else if (previousFocus && previousFocus.isConnected) {
      previousFocus.focus();
    }
  }

  close.addEventListener("click", () => closeDrawer(true));
  backdrop.addEventListener("click", () => closeDrawer(true));
  document.addEventListener("keydown", onKey);
  close.focus();
  return { close: closeDrawer, element: panel };
}

function notStored(task, media, onChanged) {
  const retry = h("button", { type: "button", class: "button small" }, "Fetch again");
  retry.addEventListener("click", async () => {
    retry.disabled = true;
    try {
      await api.post(`/api/v1/${task.object}s/${task.id}/media/${media.id}/fetch`);
      toast("Stored", { tone: "success" });
      onChanged(task);
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
      retry.disabled = false;
    }
  });
  return h("div", { class: "alert tone-warning" },
    h("strong", {}, "Result not stored"),
    h("span", {}, media.reason_message || media.reason || "The file could not be stored."),
    media.reason === "quota_exceeded" ? h("div", {}, retry) : null);
}
