// The request-log viewer: filters (mirrored in the URL), a paged table, and a detail panel
// with the decrypted request and response, category, tags and note. Admins see everyone's
// requests (and can filter by user); others see their own.

import { api, errorMessage } from "./api.js";
import { debounce, h, icon, setVar } from "./dom.js";
import { toast } from "./toast.js";
import { confirmDialog } from "./dialog.js";
import { formatBytes, formatDateTime, formatShortDateTime } from "../lib/format.js";
import { pageWindow } from "../lib/filters.js";

const FILTER_KEYS = ["method", "path", "status", "category", "after", "before", "user"];
const METHODS = ["", "GET", "POST", "PATCH", "PUT", "DELETE"];
const PAGE_SIZE = 25;

function toLocalInput(iso) {
  const millis = Date.parse(iso || "");
  if (!Number.isFinite(millis)) return "";
  const date = new Date(millis);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return "";
  const millis = Date.parse(value);
  return Number.isFinite(millis) ? new Date(millis).toISOString() : "";
}

function statusClass(code) {
  return code >= 500 ? "server" : code >= 400 ? "client" : "ok";
}

function pretty(body, type) {
  if (body === null || body === undefined) return "—";
  if ((type || "").includes("json")) {
    try {
      return JSON.stringify(JSON.parse(body), null, 2);
    } catch (_error) {
      // not valid JSON (truncated): show as it is
    }
  }
  return body;
}

export function createLogViewer(root, { admin = false } = {}) {
  const params = new URLSearchParams(window.location.search);
  const filters = Object.fromEntries(FILTER_KEYS.map((key) => [key, params.get(key) || ""]));
  let pageNumber = 1;
  let categories = [];
  let activeId = null;

  const input = (key, attrs) => {
    const element = h("input", { ...attrs, value: key.endsWith("after") || key.endsWith("before")
      ? toLocalInput(filters[key]) : filters[key] });
    return element;
  };
  const methodSelect = h("select", { id: "log-method" },
    METHODS.map((m) => h("option", { value: m, selected: m === filters.method }, m || "Any")));
  const pathInput = input("path", { id: "log-path", placeholder: "/api/v1/videos",
    autocomplete: "off" });
  const statusInput = input("status", { id: "log-status", type: "number", min: "100", max: "599",
    placeholder: "e.g. 422" });
  const categorySelect = h("select", { id: "log-category" }, h("option", { value: "" }, "Any"));
  const afterInput = input("after", { id: "log-after", type: "datetime-local" });
  const beforeInput = input("before", { id: "log-before", type: "datetime-local" });
  const userInput = admin ? input("user", { id: "log-user", placeholder: "User id",
    autocomplete: "off" }) : null;
  const field = (id, label, control) => h("div", { class: "field" },
    h("label", { for: id }, label), control);

  const tableBody = h("tbody");
  const info = h("p", { class: "result-info", "aria-live": "polite" });
  const pager = h("nav", { class: "pagination", "aria-label": "Log pages" });
  const detail = h("div", { class: "card log-detail", "aria-live": "polite" },
    h("div", { class: "empty compact" }, icon("list"),
      h("p", {}, "Select a request to see its details.")));
  const categoryList = h("div", { class: "categories" });
  const categoryName = h("input", { id: "category-name", placeholder: "New category",
    maxlength: "64", autocomplete: "off" });
  const categoryColor = h("input", { id: "category-color", type: "color", value: "#6d5dfc",
    "aria-label": "Category colour" });
  const categoryForm = h("form", { class: "inline-form" },
    h("div", { class: "field" }, h("label", { for: "category-name", class: "visually-hidden" },
      "Category name"), categoryName),
    categoryColor,
    h("button", { type: "submit", class: "button small" }, icon("plus"), "Add category"));

  root.replaceChildren(
    h("form", { class: "log-filters", "aria-label": "Request log filters" },
      field("log-method", "Method", methodSelect),
      field("log-path", "Path contains", pathInput),
      field("log-status", "Status", statusInput),
      field("log-category", "Category", categorySelect),
      field("log-after", "From", afterInput),
      field("log-before", "Until", beforeInput),
      admin ? field("log-user", "User", userInput) : null),
    h("div", { class: "admin-toolbar" },
      h("span", { class: "label" }, "Categories"), categoryList, categoryForm),
    h("div", { class: "logs-layout" },
      h("div", {},
        info,
        h("div", { class: "table-wrap" },
          h("table", {},
            h("thead", {}, h("tr", {},
              h("th", {}, "Time"), h("th", {}, "Method"), h("th", {}, "Path"),
              h("th", { class: "num" }, "Status"), h("th", { class: "num" }, "Duration"))),
            tableBody)),
        pager),
      detail));

  function syncUrl() {
    const url = new URL(window.location.href);
    for (const key of FILTER_KEYS) {
      if (filters[key]) url.searchParams.set(key, filters[key]);
      else url.searchParams.delete(key);
    }
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  function readFilters() {
    filters.method = methodSelect.value;
    filters.path = pathInput.value.trim();
    filters.status = statusInput.value.trim();
    filters.category = categorySelect.value;
    filters.after = fromLocalInput(afterInput.value);
    filters.before = fromLocalInput(beforeInput.value);
    if (userInput) filters.user = userInput.value.trim();
    pageNumber = 1;
    syncUrl();
    load();
  }

  async function loadCategories() {
    categories = await api.get("/api/v1/categories");
    const chosen = filters.category;
    categorySelect.replaceChildren(h("option", { value: "" }, "Any"),
      ...categories.map((c) => h("option", { value: c.id, selected: c.id === chosen }, c.name)));
    categoryList.replaceChildren(...categories.map((category) => {
      const dot = h("span", { class: "category-dot" });
      if (category.color) setVar(dot, "--dot", category.color);
      const remove = h("button", { type: "button", class: "icon-button",
        "aria-label": "Delete category " + category.name }, icon("x"));
      remove.addEventListener("click", async () => {
        const ok = await confirmDialog({ title: `Delete “${category.name}”?`,
          message: "Entries keep existing; they just lose this category.", confirmLabel: "Delete",
          danger: true });
        if (!ok) return;
        try {
          await api.del("/api/v1/categories/" + category.id);
          await loadCategories();
        } catch (error) {
          toast(errorMessage(error), { tone: "danger" });
        }
      });
      return h("span", { class: "category-chip" }, dot, category.name, remove);
    }));
  }

  async function load() {
    const query = new URLSearchParams({ page: String(pageNumber), size: String(PAGE_SIZE) });
    if (filters.method) query.set("method", filters.method);
    if (filters.path) query.set("path_contains", filters.path);
    if (/^\d{3}$/.test(filters.status)) query.set("status_code", filters.status);
    if (filters.category) query.set("category_id", filters.category);
    if (filters.after) query.set("started_after", filters.after);
    if (filters.before) query.set("started_before", filters.before);
    if (admin && filters.user) query.set("user_id", filters.user);
    tableBody.replaceChildren(h("tr", {}, h("td", { colspan: "5" },
      h("div", { class: "spinner", "aria-label": "Loading" }))));
    try {
      const result = await api.get("/api/v1/logs?" + query);
      info.textContent = result.total ? `${result.total} request${result.total === 1 ? "" : "s"}`
        : "";
      if (!result.items.length) {
        tableBody.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" },
          "No requests match these filters.")));
      } else {
        tableBody.replaceChildren(...result.items.map(row));
      }
      renderPager(result.pages || 1);
      if (result.items.length === 1 && !activeId) {
        showDetail(result.items[0].id);
      }
    } catch (error) {
      tableBody.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "field-error" },
        errorMessage(error))));
    }
  }

  function row(entry) {
    const tr = h("tr", { class: ["log-row", entry.id === activeId ? "is-active" : ""],
      tabindex: "0", dataset: { id: entry.id },
      "aria-label": `${entry.method} ${entry.path}, status ${entry.status_code}` },
    h("td", { class: "log-time" }, formatShortDateTime(entry.started_at)),
    h("td", {}, h("span", { class: "method" }, entry.method)),
    h("td", { class: "path-cell", title: entry.path + (entry.query ? "?" + entry.query : "") },
      entry.path),
    h("td", { class: "num" }, h("span", { class: "status-code " + statusClass(entry.status_code) },
      String(entry.status_code))),
    h("td", { class: "num" }, Math.round(entry.duration_ms) + " ms"));
    const open = () => showDetail(entry.id);
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        open();
      }
    });
    return tr;
  }

  function renderPager(pages) {
    if (pages <= 1) {
      pager.replaceChildren();
      return;
    }
    pager.replaceChildren(...pageWindow(pageNumber, pages).map((number) => number === null
      ? h("span", { class: "gap" }, "…")
      : h("button", { type: "button", class: "button small page-num",
        "aria-current": number === pageNumber ? "page" : null,
        on: { click: () => { pageNumber = number; load(); } } }, String(number))));
  }

  async function showDetail(id) {
    activeId = id;
    for (const tr of tableBody.querySelectorAll("tr")) {
      tr.classList.toggle("is-active", tr.dataset.id === id);
    }
    let entry;
    try {
      entry = await api.get("/api/v1/logs/" + id);
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
      return;
    }
    const category = h("select", { id: "detail-category" },
      h("option", { value: "" }, "None"),
      categories.map((c) => h("option", { value: c.id, selected: c.id === entry.category_id },
        c.name)));
    const tags = h("input", { id: "detail-tags", value: (entry.tags || []).join(", "),
      autocomplete: "off", placeholder: "e.g. bug, slow" });
    const note = h("textarea", { id: "detail-note", rows: "3", maxlength: "4000" });
    note.value = entry.note || "";
    const save = h("button", { type: "submit", class: "button primary small" }, "Save");
    const remove = h("button", { type: "button", class: "button small ghost danger-text" },
      icon("trash"), "Delete entry");
    const annotate = h("form", { class: "form-grid" },
      h("div", { class: "field" }, h("label", { for: "detail-category" }, "Category"), category),
      h("div", { class: "field" }, h("label", { for: "detail-tags" }, "Tags"), tags),
      h("div", { class: "field" }, h("label", { for: "detail-note" }, "Note"), note),
      h("div", { class: "drawer-actions" }, save, remove));
    annotate.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api.patch("/api/v1/logs/" + id, {
          category_id: category.value || null,
          tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
          note: note.value || null,
        });
        toast("Saved", { tone: "success", timeout: 2500 });
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    });
    remove.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: "Delete this log entry?", confirmLabel: "Delete",
        danger: true });
      if (!ok) return;
      try {
        await api.del("/api/v1/logs/" + id);
        activeId = null;
        detail.replaceChildren(h("p", { class: "muted" }, "Entry deleted."));
        load();
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    });
    const headers = entry.request_headers
      ? Object.entries(entry.request_headers).map(([k, v]) => k + ": " + v).join("\n") : "—";
    detail.replaceChildren(...[
      h("div", { class: "card-head" },
        h("h3", { class: "card-title" }, h("span", { class: "method" }, entry.method), " ",
          h("span", { class: "status-code " + statusClass(entry.status_code) },
            String(entry.status_code))),
        h("span", { class: "hint" }, formatDateTime(entry.started_at))),
      h("p", { class: "mono path-line" }, entry.path + (entry.query ? "?" + entry.query : "")),
      entry.decryption_error ? h("div", { class: "alert tone-warning" },
        "Could not decrypt this entry: " + entry.decryption_error) : null,
      h("dl", { class: "kv spaced" },
        h("dt", {}, "Duration"), h("dd", {}, Math.round(entry.duration_ms) + " ms"),
        h("dt", {}, "Request"), h("dd", {}, formatBytes(entry.request_bytes)),
        h("dt", {}, "Response"), h("dd", {}, formatBytes(entry.response_bytes)),
        admin ? h("dt", {}, "User") : null, admin ? h("dd", {}, h("code", {}, entry.user_id || "—"))
          : null,
        h("dt", {}, "Client"), h("dd", {}, (entry.client_ip || "—") +
          (entry.user_agent ? " · " + entry.user_agent : "")),
        h("dt", {}, "Request id"), h("dd", {}, h("code", {}, entry.request_id))),
      h("h3", { class: "section-title spaced" }, "Request headers"),
      h("pre", { class: "code-block" }, headers),
      h("h3", { class: "section-title spaced" }, "Request body" +
        (entry.request_body_truncated ? " (truncated)" : "")),
      h("pre", { class: "code-block", id: "detail-request-body" },
        pretty(entry.request_body, entry.request_content_type)),
      h("h3", { class: "section-title spaced" }, "Response body" +
        (entry.response_body_truncated ? " (truncated)" : "")),
      h("pre", { class: "code-block", id: "detail-response-body" },
        pretty(entry.response_body, entry.response_content_type)),
      h("h3", { class: "section-title spaced" }, "Annotate"),
      annotate,
    ].filter(Boolean));
  }

  const debounced = debounce(readFilters, 400);
  for (const element of [pathInput, statusInput, userInput].filter(Boolean)) {
    element.addEventListener("input", debounced);
  }
  for (const element of [methodSelect, categorySelect, afterInput, beforeInput]) {
    element.addEventListener("change", readFilters);
  }
  categoryForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = categoryName.value.trim();
    if (!name) return;
    try {
      await api.post("/api/v1/categories", { name, color: categoryColor.value });
      categoryName.value = "";
      await loadCategories();
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });

  return {
    async start() {
      await loadCategories();
      await load();
    },
  };
}
