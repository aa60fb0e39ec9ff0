// Library (/library): the history of videos and images. Every view (tab, search, filters,
// sort, page, open item) lives in the URL, so it can be bookmarked and the Back button works.

import { api, ApiError, errorMessage } from "./ui/api.js";
import { $, $$, debounce, h, icon, setVar } from "./ui/dom.js";
import { initShell } from "./ui/shell.js";
import { toast } from "./ui/toast.js";
import { confirmDialog } from "./ui/dialog.js";
import { openDrawer } from "./ui/task-drawer.js";
import {
  activeFilterCount, defaultFilters, pageSummary, pageWindow, parseFilters, parseTags,
  serializeFilters, STATUSES, toApiQuery, withChange,
} from "./lib/filters.js";
import {
  formatBytes, isTerminal, progressView, relativeTime, statusLabel, statusTone, taskTitle,
} from "./lib/format.js";

let state = parseFilters(window.location.search);
let page = { items: [], total: 0, pages: 1 };
let models = [];
let me = null;
const selected = new Set();
let loadToken = 0;
let drawer = null;

const grid = $("#grid");

function kindNoun(plural = true) {
  return state.kind === "image" ? (plural ? "images" : "image") : (plural ? "videos" : "video");
}

// ---- URL <-> state ----------------------------------------------------------------------

function navigate(changes, { replace = false } = {}) {
  state = withChange(state, changes);
  const url = "/library" + serializeFilters(state);
  if (replace) {
    history.replaceState(null, "", url);
  } else {
    history.pushState(null, "", url);
  }
  syncControls();
}

function syncControls() {
  for (const tab of $$(".tabs .tab")) {
    const active = tab.dataset.kind === state.kind;
    tab.classList.toggle("is-active", active);
    if (active) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const search = $("#search");
  if (document.activeElement !== search) {
    search.value = state.q;
  }
  $("#sort").value = state.sort;
  $("#page-size").value = String(state.size);
  $("#filter-model").value = state.model;
  for (const box of $$("#filter-status input")) {
    box.checked = state.status.includes(box.value);
  }
  $("#filter-from").value = state.from;
  $("#filter-to").value = state.to;
  if (document.activeElement !== $("#filter-tags")) {
    $("#filter-tags").value = state.tags.join(", ");
  }
  $("#filter-favorite").checked = state.favorite;
  const count = activeFilterCount(state);
  $("#filter-count").textContent = count ? String(count) : "";
  if (count && $("#filters").hidden && !syncControls.opened) {
    // A bookmarked filtered view shows its filters.
    syncControls.opened = true;
    toggleFilters(true);
  }
}

function toggleFilters(open) {
  const button = $("#filter-toggle");
  const show = open ?? button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(show));
  $("#filters").hidden = !show;
}

// ---- Loading and rendering ----------------------------------------------------------------

function skeletons(count) {
  grid.replaceChildren(...Array.from({ length: Math.min(count, 12) }, () =>
    h("li", { class: "tile is-skeleton", "aria-hidden": "true" },
      h("div", { class: "tile-media" }),
      h("div", { class: "tile-body" },
        h("div", { class: "skeleton line" }), h("div", { class: "skeleton line short" })))));
}

async function load({ quiet = false } = {}) {
  const token = ++loadToken;
  grid.setAttribute("aria-busy", "true");
  if (!quiet) {
    skeletons(state.size);
    $("#empty").hidden = true;
  }
  try {
    const offset = new Date().getTimezoneOffset();
    const result = await api.get(`/api/v1/${state.kind}s?` + toApiQuery(state, offset));
    if (token !== loadToken) {
      return;
    }
    page = result;
    if (state.page > result.pages && result.total > 0) {
      navigate({ page: result.pages }, { replace: true });
      return load();
    }
    render();
  } catch (error) {
    if (token === loadToken && !(error instanceof ApiError && error.status === 401)) {
      grid.replaceChildren();
      showEmpty("Could not load your " + kindNoun(), errorMessage(error), null);
    }
  } finally {
    if (token === loadToken) grid.removeAttribute("aria-busy");
  }
  if (state.open) {
    showDrawer(state.open);
  }
}

function showEmpty(title, text, action) {
  $("#empty").hidden = false;
  $("#empty-title").textContent = title;
  $("#empty-text").textContent = text;
  $("#empty-actions").replaceChildren(action || "");
}

function render() {
  const { items, total } = page;
  const summary = pageSummary(page, state.page, state.size);
  $("#result-info").textContent = summary.first
    ? `${summary.first}–${summary.last} of ${summary.label} ${kindNoun(total !== 1)}`
    : "";
  grid.replaceChildren(...items.map(tile));
  $("#empty").hidden = true;
  if (!items.length) {
    const filtered = activeFilterCount(state) > 0 || state.q;
    if (filtered) {
      showEmpty("No " + kindNoun() + " match", "Try another search or fewer filters.",
        h("button", { type: "button", class: "button", on: { click: clearFilters } },
          "Clear search and filters"));
    } else {
      showEmpty("No " + kindNoun() + " yet",
        "What you generate in the studio shows up here, ready to play and organise.",
        h("a", { class: "button primary", href: state.kind === "image" ? "/image" : "/" },
          icon("spark"), "Create your first " + kindNoun(false)));
    }
  }
  renderPagination();
  updateSelection();
}

function mediaOf(task) {
  return (task.media || []).find((item) => item.state === "stored") || null;
}

function playInline(task, container) {
  const video = h("video", {
    controls: true,
    autoplay: true,
    playsInline: true,
    preload: "auto",
    src: `/api/v1/videos/${task.id}/content`,
    "aria-label": "Video: " + taskTitle(task),
  });
  container.replaceChildren(video);
  video.focus();
}

function tileMedia(task) {
  const container = h("div", { class: "tile-media" });
  const media = mediaOf(task);
  if (task.status === "completed" && media) {
    if (media.thumbnail_url) {
      container.append(h("img", { src: `/api/v1/${task.object}s/${task.id}/thumbnail`,
        alt: "", loading: "lazy", decoding: "async" }));
    } else {
      container.append(icon(task.object === "image" ? "image" : "video"));
    }
    if (task.object === "video") {
      container.append(h("button", { type: "button", class: "tile-play",
        "aria-label": "Play " + taskTitle(task),
        on: { click: () => playInline(task, container) } }, icon("play")));
    } else {
      container.append(h("button", { type: "button", class: "tile-play tile-open",
        "aria-label": "Open " + taskTitle(task),
        on: { click: () => openTask(task.id) } }));
    }
  } else if (!isTerminal(task.status)) {
    const view = progressView(task);
    const fill = h("span", { class: "progress-fill" });
    setVar(fill, "--value", view.percent + "%");
    container.append(h("div", { class: "tile-pending" },
      h("div", { class: "spinner", "aria-hidden": "true" }),
      h("div", { class: ["progress", view.indeterminate ? "is-indeterminate" : ""],
        role: "progressbar", "aria-label": "Progress", "aria-valuetext": view.label }, fill)));
  } else {
    container.append(icon(task.status === "failed" ? "alert" : "x"));
  }
  return container;
}

function tile(task) {
  const name = taskTitle(task);
  const checkbox = h("input", { type: "checkbox", checked: selected.has(task.id),
    "aria-label": "Select " + name,
    on: { change: (event) => {
      if (event.target.checked) selected.add(task.id);
      else selected.delete(task.id);
      element.classList.toggle("is-selected", event.target.checked);
      updateSelection();
    } } });
  const titleButton = h("button", { type: "button", class: "tile-title", title: "Rename",
    "aria-label": "Rename " + name,
    on: { click: () => startRename(task, titleButton) } }, name);
  const star = h("button", { type: "button", class: "icon-button star",
    "aria-pressed": String(Boolean(task.favorite)),
    "aria-label": (task.favorite ? "Remove from favourites: " : "Add to favourites: ") + name,
    on: { click: () => toggleFavorite(task, star) } }, icon("star"));
  const media = mediaOf(task);
  const element = h("li", { class: ["tile", selected.has(task.id) ? "is-selected" : ""],
    dataset: { id: task.id, status: task.status } },
  h("label", { class: "tile-select" }, checkbox),
  h("span", { class: ["chip", "tile-status", "tone-" + statusTone(task.status)] },
    statusLabel(task.status)),
  tileMedia(task),
  h("div", { class: "tile-body" },
    h("div", { class: "tile-title-row" }, titleButton),
    h("div", { class: "tile-meta" },
      h("span", {}, task.model),
      h("span", { title: task.created_at }, relativeTime(task.created_at))),
    h("div", { class: "tile-tags" }, (task.tags || []).map((tag) =>
      h("span", { class: "tag" }, tag))),
    h("div", { class: "tile-actions" },
      star,
      media ? h("span", { class: "hint" }, formatBytes(media.bytes)) : null,
      h("button", { type: "button", class: "button small ghost",
        "aria-label": "Details of " + name,
        on: { click: () => openTask(task.id) } }, "Details"))));
  return element;
}

function renderPagination() {
  const nav = $("#pagination");
  const { pages, hasNext } = pageSummary(page, state.page, state.size);
  if (pages <= 1 && !hasNext) {
    nav.replaceChildren();
    return;
  }
  const go = (number) => () => {
    navigate({ page: number });
    load();
    window.scrollTo({ top: 0, behavior: "smooth" });
  };
  nav.replaceChildren(
    h("button", { type: "button", class: "button small", disabled: state.page <= 1,
      "aria-label": "Previous page", on: { click: go(state.page - 1) } },
    icon("chevron-left")),
    ...pageWindow(state.page, pages).map((number) => number === null
      ? h("span", { class: "gap", "aria-hidden": "true" }, "…")
      : h("button", { type: "button", class: "button small page-num",
        "aria-label": "Page " + number,
        "aria-current": number === state.page ? "page" : null,
        on: { click: go(number) } }, String(number))),
    h("button", { type: "button", class: "button small", disabled: !hasNext,
      "aria-label": "Next page", on: { click: go(state.page + 1) } },
    icon("chevron-right")),
  );
}

// ---- Inline edits ---------------------------------------------------------------------------

async function patchTask(task, changes) {
  const updated = await api.patch(`/api/v1/${task.object}s/${task.id}`, changes);
  Object.assign(task, updated);
  return updated;
}

function startRename(task, button) {
  const input = h("input", { class: "tile-title-input", value: task.title || "",
    maxlength: "200", "aria-label": "New title", placeholder: taskTitle(task) });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title !== (task.title || "")) {
      try {
        await patchTask(task, { title: title || null });
        toast("Renamed", { tone: "success", timeout: 2500 });
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    }
    button.textContent = taskTitle(task);
    input.replaceWith(button);
    button.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  button.replaceWith(input);
  input.focus();
  input.select();
}

async function toggleFavorite(task, button) {
  const next = !task.favorite;
  button.setAttribute("aria-pressed", String(next));
  try {
    await patchTask(task, { favorite: next });
    button.setAttribute("aria-label", (next ? "Remove from favourites: " : "Add to favourites: ") +
      taskTitle(task));
  } catch (error) {
    button.setAttribute("aria-pressed", String(!next));
    toast(errorMessage(error), { tone: "danger" });
  }
}

// ---- Selection and bulk delete -----------------------------------------------------------------

function updateSelection() {
  const bar = $("#selection-bar");
  bar.hidden = selected.size === 0;
  $("#selection-count").textContent = selected.size === 1 ? "1 selected" : selected.size + " selected";
}

async function bulkDelete() {
  const ids = [...selected];
  const bytes = page.items.filter((task) => selected.has(task.id))
    .reduce((sum, task) => sum + (task.media || []).reduce((s, m) => s + (m.bytes || 0), 0), 0);
  const ok = await confirmDialog({
    title: `Delete ${ids.length} ${ids.length === 1 ? "item" : "items"}?`,
    message: "Running tasks are cancelled and stored files are removed" +
      (bytes ? `, freeing about ${formatBytes(bytes)}` : "") + ". This cannot be undone.",
    confirmLabel: "Delete",
    danger: true,
  });
  if (!ok) return;
  try {
    const result = await api.post("/api/v1/tasks/bulk-delete", { ids });
    selected.clear();
    toast(`Deleted ${result.deleted.length} ${result.deleted.length === 1 ? "item" : "items"}`,
      { tone: "success" });
    await load({ quiet: true });
  } catch (error) {
    toast(errorMessage(error), { tone: "danger" });
  }
}

// ---- Drawer ------------------------------------------------------------------------------------

function openTask(id) {
  navigate({ open: id });
  showDrawer(id);
}

async function showDrawer(id) {
  if (drawer && drawer.id === id) return;
  drawer?.close(false);
  let task = page.items.find((item) => item.id === id);
  try {
    task = await api.get(`/api/v1/${state.kind}s/${id}`);
  } catch (error) {
    if (!task) {
      toast(error.status === 404 ? "That item no longer exists." : errorMessage(error),
        { tone: "danger" });
      navigate({ open: "" }, { replace: true });
      return;
    }
  }
  drawer = openDrawer(task, {
    models,
    isAdmin: Boolean(me?.is_admin),
    onClose: () => {
      drawer = null;
      if (state.open) navigate({ open: "" });
      const tileEl = grid.querySelector(`[data-id="${CSS.escape(id)}"] .tile-title`);
      tileEl?.focus();
    },
    onChanged: () => load({ quiet: true }),
    onDeleted: () => {
      selected.delete(id);
      navigate({ open: "" }, { replace: true });
      load({ quiet: true });
    },
  });
  drawer.id = id;
}

function clearFilters() {
  const defaults = defaultFilters();
  navigate({ q: "", model: "", status: [], from: "", to: "", tags: [], favorite: false,
    sort: defaults.sort });
  load();
}

// ---- Live updates ---------------------------------------------------------------------------------

function listen() {
  const source = new EventSource("/api/v1/tasks/events");
  const refresh = debounce(() => load({ quiet: true }), 400);
  for (const type of ["task.completed", "task.failed", "task.cancelled", "task.created"]) {
    source.addEventListener(type, (event) => {
      try {
        const data = JSON.parse(event.data);
        if (data.object === state.kind) refresh();
      } catch (_error) {
        // ignore malformed events
      }
    });
  }
}

// ---- Wiring --------------------------------------------------------------------------------------

function wire() {
  for (const tab of $$(".tabs .tab")) {
    tab.addEventListener("click", (event) => {
      event.preventDefault();
      selected.clear();
      navigate({ ...defaultFilters(), kind: tab.dataset.kind, size: state.size });
      loadModels().then(load);
    });
  }
  const search = $("#search");
  const searchNow = debounce(() => {
    navigate({ q: search.value }, { replace: true });
    load();
  }, 300);
  search.addEventListener("input", searchNow);
  $("#filter-toggle").addEventListener("click", () => toggleFilters());
  $("#sort").addEventListener("change", (e) => { navigate({ sort: e.target.value }); load(); });
  $("#page-size").addEventListener("change", (e) => {
    navigate({ size: Number(e.target.value) });
    load();
  });
  $("#filter-model").addEventListener("change", (e) => { navigate({ model: e.target.value }); load(); });
  $("#filter-from").addEventListener("change", (e) => { navigate({ from: e.target.value }); load(); });
  $("#filter-to").addEventListener("change", (e) => { navigate({ to: e.target.value }); load(); });
  $("#filter-favorite").addEventListener("change", (e) => {
    navigate({ favorite: e.target.checked });
    load();
  });
  const tagsNow = debounce(() => { navigate({ tags: parseTags($("#filter-tags").value) }); load(); },
    500);
  $("#filter-tags").addEventListener("input", tagsNow);
  $("#filters").addEventListener("submit", (e) => e.preventDefault());
  $("#filters-clear").addEventListener("click", clearFilters);
  $("#select-all").addEventListener("click", () => {
    for (const task of page.items) selected.add(task.id);
    render();
  });
  $("#select-clear").addEventListener("click", () => {
    selected.clear();
    render();
  });
  $("#bulk-delete").addEventListener("click", bulkDelete);
  window.addEventListener("popstate", () => {
    state = parseFilters(window.location.search);
    syncControls();
    if (!state.open && drawer) {
      drawer.close(false);
      drawer = null;
    }
    load();
  });
}

function buildStatusFilter() {
  $("#filter-status").replaceChildren(...STATUSES.map((status) =>
    h("label", { class: "check" },
      h("input", { type: "checkbox", value: status, on: { change: () => {
        navigate({ status: $$("#filter-status input:checked").map((box) => box.value) });
        load();
      } } }),
      statusLabel(status))));
}

async function loadModels() {
  const catalog = await api.get("/api/v1/models?kind=" + state.kind);
  models = catalog.data;
  const select = $("#filter-model");
  select.replaceChildren(h("option", { value: "" }, "All models"),
    ...models.map((model) => h("option", { value: model.id }, model.display_name)));
  select.value = state.model;
}

async function main() {
  buildStatusFilter();
  wire();
  syncControls();
  skeletons(state.size);
  me = await initShell();
  await loadModels();
  syncControls();
  await load();
  listen();
}

main().catch((error) => {
  if (!(error instanceof ApiError && error.status === 401)) {
    toast(errorMessage(error), { tone: "danger" });
  }
});
