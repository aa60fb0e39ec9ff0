// Admin (/admin, administrators only): usage charts, users (search, enable/disable, admin
// rights, quota) and the request log. The active tab is in the URL (?tab=).

import { api, ApiError, errorMessage } from "./ui/api.js";
import { $, $$, debounce, h, setVar } from "./ui/dom.js";
import { initShell } from "./ui/shell.js";
import { toast } from "./ui/toast.js";
import { confirmDialog } from "./ui/dialog.js";
import { createLogViewer } from "./ui/logs.js";
import { barChart, columnChart } from "./ui/charts.js";
import { pageWindow } from "./lib/filters.js";
import {
  formatBytes, formatDateTime, formatPercent, formatSeconds, parseBytes, relativeTime,
  usagePercent,
} from "./lib/format.js";

const TABS = ["overview", "users", "logs"];
let me = null;
const started = new Set();
const users = { page: 1, search: "", status: "" };

function currentTab() {
  const tab = new URLSearchParams(window.location.search).get("tab");
  return TABS.includes(tab) ? tab : "overview";
}

function showTab(tab, { push = false } = {}) {
  for (const name of TABS) {
    const active = name === tab;
    const button = $("#tab-" + name);
    button.setAttribute("aria-selected", String(active));
    button.tabIndex = active ? 0 : -1;
    $("#panel-" + name).hidden = !active;
  }
  if (push) {
    // Switching tabs drops the other tab's filters from the URL.
    history.pushState(null, "", "/admin" + (tab === "overview" ? "" : "?tab=" + tab));
  }
  if (!started.has(tab)) {
    started.add(tab);
    if (tab === "overview") loadStats();
    if (tab === "users") loadUsers();
    if (tab === "logs") createLogViewer($("#logs-root"), { admin: true }).start();
  }
}

// ---- Overview -----------------------------------------------------------------------------

async function loadStats() {
  const days = $("#stats-days").value;
  let stats;
  try {
    stats = await api.get("/api/v1/admin/stats?days=" + days);
  } catch (error) {
    toast(errorMessage(error), { tone: "danger" });
    return;
  }
  const totals = stats.totals;
  $("#kpi-tasks").textContent = String(totals.tasks);
  $("#kpi-tasks-sub").textContent = `${totals.completed} completed · ${totals.failed} failed · ` +
    `${totals.active} running`;
  $("#kpi-success").textContent = formatPercent(stats.success_rate);
  $("#kpi-success-sub").textContent = totals.cancelled ? `${totals.cancelled} cancelled (not counted)`
    : "Completed ÷ (completed + failed)";
  $("#kpi-median").textContent = formatSeconds(stats.median_seconds_to_result);
  const used = stats.storage_by_user.reduce((sum, u) => sum + u.used_bytes, 0);
  $("#kpi-storage").textContent = formatBytes(used);
  $("#kpi-storage-sub").textContent = `${stats.storage_by_user.length} user` +
    (stats.storage_by_user.length === 1 ? "" : "s") + " with stored media";

  columnChart($("#chart-daily"), {
    labels: stats.days,
    series: stats.tasks_per_day.map((s) => ({ key: s.model, values: s.counts })),
    caption: "Tasks created per day, stacked by model",
  });
  barChart($("#chart-success"), {
    rows: stats.outcomes.filter((o) => o.success_rate !== null).map((o) => ({
      label: o.model, segments: [{ key: "success", value: o.success_rate }] })),
    max: 1,
    format: formatPercent,
    caption: "Share of finished tasks that completed, by model",
    empty: "No finished tasks in this period.",
  });
  barChart($("#chart-median"), {
    rows: stats.timings.filter((t) => t.median_seconds !== null).map((t) => ({
      label: t.model, segments: [{ key: "median", value: t.median_seconds }] })),
    format: formatSeconds,
    caption: "Median seconds from request to stored result, by model",
    empty: "No completed tasks in this period.",
  });
  barChart($("#chart-storage"), {
    rows: stats.storage_by_user.map((u) => ({ label: u.username, segments: [
      { key: "Videos", value: u.by_kind.video || 0 },
      { key: "Images", value: u.by_kind.image || 0 },
      { key: "Other", value: Math.max(0, u.used_bytes - (u.by_kind.video || 0) -
        (u.by_kind.image || 0)) },
    ] })),
    keys: ["Videos", "Images", "Other"],
    format: formatBytes,
    caption: "Storage used per user, by kind",
    empty: "Nobody stores anything yet.",
  });
}

// ---- Users --------------------------------------------------------------------------------

async function loadUsers() {
  const query = new URLSearchParams({ page: String(users.page), size: "20" });
  if (users.search) query.set("search", users.search);
  if (users.status === "active") query.set("is_active", "true");
  if (users.status === "disabled") query.set("is_active", "false");
  if (users.status === "admin") query.set("is_admin", "true");
  let result;
  try {
    result = await api.get("/api/v1/admin/users?" + query);
  } catch (error) {
    toast(errorMessage(error), { tone: "danger" });
    return;
  }
  $("#users-info").textContent = result.total + (result.total === 1 ? " account" : " accounts");
  $("#users").replaceChildren(...(result.items.length ? result.items.map(userRow)
    : [h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No accounts match."))]));
  const pager = $("#users-pager");
  pager.replaceChildren(...(result.pages > 1 ? pageWindow(users.page, result.pages).map((n) =>
    n === null ? h("span", { class: "gap" }, "…")
      : h("button", { type: "button", class: "button small page-num",
        "aria-current": n === users.page ? "page" : null,
        on: { click: () => { users.page = n; loadUsers(); } } }, String(n))) : []));
}

function switchCell(label, checked, disabled, onToggle) {
  const input = h("input", { type: "checkbox", role: "switch", class: "switch-input",
    checked, disabled, "aria-label": label });
  input.addEventListener("change", () => onToggle(input));
  return h("label", { class: "switch" }, input, h("span", { class: "switch-track",
    "aria-hidden": "true" }));
}

function userRow(user) {
  const self = me && user.id === me.id;
  const update = async (changes, input, question) => {
    if (question) {
      const ok = await confirmDialog(question);
      if (!ok) {
        input.checked = !input.checked;
        return;
      }
    }
    try {
      await api.patch("/api/v1/admin/users/" + user.id, changes);
      toast(`Updated ${user.username}`, { tone: "success", timeout: 2500 });
      loadUsers();
    } catch (error) {
      input.checked = !input.checked;
      toast(errorMessage(error), { tone: "danger" });
    }
  };
  const active = switchCell(`Account of ${user.username} enabled`, user.is_active, self,
    (input) => update({ is_active: input.checked }, input, input.checked ? null : {
      title: `Disable ${user.username}?`,
      message: "They are signed out everywhere and their API keys stop working.",
      confirmLabel: "Disable", danger: true }));
  const adminSwitch = switchCell(`${user.username} is an administrator`, user.is_admin, self,
    (input) => update({ is_admin: input.checked }, input, input.checked ? {
      title: `Make ${user.username} an administrator?`,
      message: "Administrators see every user and every request.", confirmLabel: "Make admin" }
      : null));
  const percent = usagePercent(user.storage_used_bytes, user.storage_quota_bytes);
  const fill = h("span", { class: "progress-fill" });
  setVar(fill, "--value", Math.min(100, percent) + "%");
  const quotaInput = h("input", { value: formatBytes(user.storage_quota_bytes),
    "aria-label": `Quota of ${user.username}`, id: "quota-" + user.id, autocomplete: "off" });
  const save = h("button", { type: "submit", class: "button small" }, "Save");
  const quotaForm = h("form", { class: "quota-edit" }, quotaInput, save);
  quotaForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const bytes = parseBytes(quotaInput.value);
    if (bytes === null) {
      quotaInput.setAttribute("aria-invalid", "true");
      toast("Write a size like 2 GB or 500 MB", { tone: "danger" });
      return;
    }
    quotaInput.removeAttribute("aria-invalid");
    try {
      await api.patch(`/api/v1/admin/users/${user.id}/quota`, { storage_quota_bytes: bytes });
      toast(`Quota of ${user.username} set to ${formatBytes(bytes)}`, { tone: "success" });
      loadUsers();
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });
  return h("tr", { dataset: { user: user.username } },
    h("td", {}, h("div", { class: "user-cell" },
      h("span", { class: "avatar", "aria-hidden": "true" }, user.username[0].toUpperCase()),
      h("div", {}, h("div", { class: "primary-line" }, user.username, self ? " (you)" : ""),
        h("div", { class: "secondary-line" }, user.email)))),
    h("td", {}, active),
    h("td", {}, adminSwitch),
    h("td", { class: "usage-cell" },
      h("span", { class: "hint" }, formatBytes(user.storage_used_bytes) + " · " + percent + "%"),
      h("div", { class: ["progress", percent >= 100 ? "tone-danger" : ""], role: "progressbar",
        "aria-label": `Storage used by ${user.username}`, "aria-valuenow": String(Math.min(100,
          percent)), "aria-valuemin": "0", "aria-valuemax": "100" }, fill)),
    h("td", {}, quotaForm),
    h("td", {}, formatDateTime(user.created_at)),
    h("td", {}, user.last_login_at ? relativeTime(user.last_login_at) : "never"));
}

// ---- Wiring ---------------------------------------------------------------------------------

async function main() {
  for (const button of $$("[role=tab]")) {
    button.addEventListener("click", () => showTab(button.dataset.tab, { push: true }));
    button.addEventListener("keydown", (event) => {
      const index = TABS.indexOf(button.dataset.tab);
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (step) {
        const next = TABS[(index + step + TABS.length) % TABS.length];
        showTab(next, { push: true });
        $("#tab-" + next).focus();
      }
    });
  }
  window.addEventListener("popstate", () => showTab(currentTab()));
  $("#stats-days").addEventListener("change", loadStats);
  $("#user-search").addEventListener("input", debounce((event) => {
    users.search = event.target.value.trim();
    users.page = 1;
    loadUsers();
  }, 300));
  $("#user-status").addEventListener("change", (event) => {
    users.status = event.target.value;
    users.page = 1;
    loadUsers();
  });
  me = await initShell();
  showTab(currentTab());
}

main().catch((error) => {
  if (!(error instanceof ApiError && error.status === 401)) {
    toast(errorMessage(error), { tone: "danger" });
  }
});
