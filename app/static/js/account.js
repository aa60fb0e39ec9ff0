// Account (/account): storage quota per kind, profile and password, sessions, API keys
// (secret shown once, never stored by the page), webhook secret and deliveries, own requests.

import { api, ApiError, errorMessage } from "./ui/api.js";
import { $, h, icon, setVar } from "./ui/dom.js";
import { initShell, signOut } from "./ui/shell.js";
import { toast } from "./ui/toast.js";
import { confirmDialog } from "./ui/dialog.js";
import { copyText } from "./ui/task-drawer.js";
import { showFieldErrors } from "./ui/params.js";
import { createLogViewer } from "./ui/logs.js";
import { fieldErrors } from "./lib/catalog.js";
import { formatBytes, formatDateTime, relativeTime, usagePercent } from "./lib/format.js";

// A share of the bar; anything stored stays visible as at least a sliver.
function pct(part, total) {
  if (total <= 0 || part <= 0) return part > 0 ? 100 : 0;
  return Math.min(100, Math.max(0.6, (part * 100) / total));
}

async function loadStorage() {
  const usage = await api.get("/api/v1/storage/me");
  const video = usage.by_kind?.video || 0;
  const image = usage.by_kind?.image || 0;
  const other = Math.max(0, usage.used_bytes - video - image);
  const bar = $("#quota-bar");
  setVar(bar, "--video", pct(video, usage.quota_bytes) + "%");
  setVar(bar, "--image", pct(image, usage.quota_bytes) + "%");
  setVar(bar, "--other", pct(other, usage.quota_bytes) + "%");
  const percent = usagePercent(usage.used_bytes, usage.quota_bytes);
  bar.setAttribute("aria-valuenow", String(Math.min(100, percent)));
  bar.setAttribute("aria-valuetext",
    `${formatBytes(usage.used_bytes)} of ${formatBytes(usage.quota_bytes)} used`);
  bar.dataset.usedBytes = String(usage.used_bytes);
  bar.classList.toggle("is-over", usage.used_bytes > usage.quota_bytes);
  $("#quota-used").textContent = formatBytes(usage.used_bytes);
  $("#quota-total").textContent = formatBytes(usage.quota_bytes);
  $("#quota-free").textContent = formatBytes(usage.available_bytes);
  $("#used-video").textContent = formatBytes(video);
  $("#used-image").textContent = formatBytes(image);
  $("#used-other").textContent = formatBytes(other);
  $("#legend-other").hidden = other === 0;
  const chip = $("#quota-percent");
  chip.textContent = percent + "%";
  chip.className = "chip tone-" + (percent >= 100 ? "danger" : percent >= 85 ? "warning" : "success");
}

function renderProfile(user) {
  $("#password-username").value = user.username;
  const rows = [
    ["Username", user.username],
    ["E-mail", user.email],
    ["Role", user.is_admin ? "Administrator" : "Member"],
    ["Member since", formatDateTime(user.created_at)],
  ];
  $("#profile").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function wirePassword() {
  const form = $("#password-form");
  const message = $("#password-message");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    const current = $("#current-password");
    const next = $("#new-password");
    const errors = {};
    if (!current.value) errors.current_password = "Required.";
    if (next.value.length < 8) errors.new_password = "At least 8 characters.";
    showFieldErrors(form, errors);
    if (Object.keys(errors).length) return;
    try {
      await api.post("/api/v1/auth/password", { current_password: current.value,
        new_password: next.value });
      form.reset();
      message.className = "alert tone-success";
      message.textContent = "Password changed. Other sessions were signed out.";
      message.hidden = false;
    } catch (error) {
      if (error.status === 400) {
        showFieldErrors(form, { current_password: error.message });
      } else if (error.status === 422) {
        showFieldErrors(form, fieldErrors(error.details));
      } else {
        message.className = "alert tone-danger";
        message.textContent = errorMessage(error);
        message.hidden = false;
      }
    }
  });
}

function describeAgent(agent) {
  if (!agent) return "Unknown device";
  const browser = /Edg\//.test(agent) ? "Edge" : /Chrome\//.test(agent) ? "Chrome"
    : /Firefox\//.test(agent) ? "Firefox" : /Safari\//.test(agent) ? "Safari"
      : /curl|python|httpx/i.test(agent) ? "Script" : "Browser";
  const os = /Windows/.test(agent) ? "Windows" : /Mac OS X|Macintosh/.test(agent) ? "macOS"
    : /Android/.test(agent) ? "Android" : /iPhone|iPad/.test(agent) ? "iOS"
      : /Linux/.test(agent) ? "Linux" : "";
  return browser + (os ? " on " + os : "");
}

async function loadSessions() {
  const sessions = await api.get("/api/v1/auth/sessions");
  $("#sessions").replaceChildren(...sessions.map((session) => {
    const revoke = h("button", { type: "button", class: "button small ghost danger-text",
      "aria-label": "Revoke session " + describeAgent(session.user_agent) }, "Revoke");
    revoke.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: "Revoke this session?",
        message: session.current ? "This signs you out here." : "That device is signed out at once.",
        confirmLabel: "Revoke", danger: true });
      if (!ok) return;
      try {
        await api.del("/api/v1/auth/sessions/" + session.id);
        if (session.current) {
          signOut();
          return;
        }
        toast("Session revoked", { tone: "success" });
        loadSessions();
      } catch (error) {
        toast(errorMessage(error), { tone: "danger" });
      }
    });
    return h("li", { class: "list-item" },
      h("span", { class: "list-icon" }, icon("shield")),
      h("div", { class: "grow" },
        h("div", { class: "primary-line" }, describeAgent(session.user_agent), " ",
          session.current ? h("span", { class: "chip tone-success" }, "This device") : null),
        h("div", { class: "secondary-line" },
          (session.ip_address || "unknown address") + " · signed in " +
          relativeTime(session.created_at) +
          (session.last_seen_at ? " · active " + relativeTime(session.last_seen_at) : ""))),
      revoke);
  }));
}

async function loadKeys() {
  const keys = await api.get("/api/v1/keys");
  const list = $("#keys");
  if (!keys.length) {
    list.replaceChildren(h("li", { class: "list-item muted" }, "No API keys yet."));
    return;
  }
  list.replaceChildren(...keys.map((key) => {
    const revoked = Boolean(key.revoked_at);
    const revoke = revoked ? h("span", { class: "chip tone-muted" }, "Revoked")
      : h("button", { type: "button", class: "button small ghost danger-text",
        "aria-label": "Revoke key " + key.name }, "Revoke");
    if (!revoked) {
      revoke.addEventListener("click", async () => {
        const ok = await confirmDialog({ title: `Revoke “${key.name}”?`,
          message: "Anything using this key stops working immediately.", confirmLabel: "Revoke",
          danger: true });
        if (!ok) return;
        try {
          await api.del("/api/v1/keys/" + key.id);
          toast("Key revoked", { tone: "success" });
          loadKeys();
        } catch (error) {
          toast(errorMessage(error), { tone: "danger" });
        }
      });
    }
    return h("li", { class: "list-item" },
      h("span", { class: "list-icon" }, icon("key")),
      h("div", { class: "grow" },
        h("div", { class: "primary-line" }, key.name),
        h("div", { class: "secondary-line" }, h("code", {}, key.prefix + "…"),
          " · created " + relativeTime(key.created_at) +
          (key.last_used_at ? " · used " + relativeTime(key.last_used_at) : " · never used") +
          (key.expires_at ? " · expires " + formatDateTime(key.expires_at) : ""))),
      revoke);
  }));
}

function wireKeys() {
  const form = $("#key-form");
  const reveal = $("#key-reveal");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("#key-name").value.trim();
    if (!name) {
      showFieldErrors(form, { name: "Give the key a name you will recognise." });
      return;
    }
    showFieldErrors(form, {});
    const body = { name };
    const expires = $("#key-expires").value;
    if (expires) {
      body.expires_at = new Date(expires + "T23:59:59").toISOString();
    }
    try {
      const created = await api.post("/api/v1/keys", body);
      // Shown once, kept only in this element until "Done": never written to storage.
      $("#key-secret").textContent = created.key;
      reveal.hidden = false;
      form.reset();
      $("#key-copy").focus();
      loadKeys();
    } catch (error) {
      if (error.status === 422) showFieldErrors(form, fieldErrors(error.details));
      else toast(errorMessage(error), { tone: "danger" });
    }
  });
  $("#key-copy").addEventListener("click", async () => {
    const ok = await copyText($("#key-secret").textContent);
    toast(ok ? "Key copied" : "Could not copy — select it instead",
      { tone: ok ? "success" : "danger", timeout: 2500 });
  });
  $("#key-done").addEventListener("click", () => {
    $("#key-secret").textContent = "";
    reveal.hidden = true;
  });
}

function wireWebhook() {
  let secret = null;
  const box = $("#webhook-secret");
  const revealButton = $("#webhook-reveal");
  const fetchSecret = async () => {
    if (!secret) secret = (await api.get("/api/v1/webhooks/secret")).secret;
    return secret;
  };
  revealButton.addEventListener("click", async () => {
    const shown = revealButton.dataset.shown === "true";
    if (shown) {
      box.textContent = "••••••••••••••••••••••••";
      revealButton.dataset.shown = "false";
      revealButton.querySelector("span").textContent = "Reveal";
      return;
    }
    try {
      box.textContent = await fetchSecret();
      revealButton.dataset.shown = "true";
      revealButton.querySelector("span").textContent = "Hide";
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });
  $("#webhook-copy").addEventListener("click", async () => {
    try {
      const ok = await copyText(await fetchSecret());
      toast(ok ? "Secret copied" : "Could not copy", { tone: ok ? "success" : "danger",
        timeout: 2500 });
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });
  $("#webhook-rotate").addEventListener("click", async () => {
    const ok = await confirmDialog({ title: "Rotate the webhook secret?",
      message: "Deliveries are signed with the new secret from now on; update your receivers.",
      confirmLabel: "Rotate", danger: true });
    if (!ok) return;
    try {
      secret = (await api.post("/api/v1/webhooks/secret/rotate")).secret;
      if (revealButton.dataset.shown === "true") box.textContent = secret;
      toast("Secret rotated", { tone: "success" });
    } catch (error) {
      toast(errorMessage(error), { tone: "danger" });
    }
  });
}

async function loadDeliveries() {
  const deliveries = await api.get("/api/v1/webhooks/deliveries");
  const list = $("#deliveries");
  if (!deliveries.length) {
    list.replaceChildren(h("li", { class: "list-item muted" }, "No deliveries yet."));
    return;
  }
  list.replaceChildren(...deliveries.slice(0, 10).map((d) => h("li", { class: "list-item" },
    h("div", { class: "grow" },
      h("div", { class: "primary-line" }, d.event_type),
      h("div", { class: "secondary-line" }, relativeTime(d.created_at) + " · " + d.attempts +
        (d.attempts === 1 ? " attempt" : " attempts") +
        (d.last_status_code ? " · HTTP " + d.last_status_code : "") +
        (d.last_error ? " · " + d.last_error : ""))),
    h("span", { class: "chip tone-" + ({ delivered: "success", failed: "danger" }[d.state] ||
      "neutral") }, d.state))));
}

async function main() {
  wirePassword();
  wireKeys();
  wireWebhook();
  const user = await initShell();
  renderProfile(user);
  await Promise.all([loadStorage(), loadSessions(), loadKeys(), loadDeliveries()]);
  createLogViewer($("#logs-root"), { admin: false }).start();
  if (window.location.hash === "#requests") {
    $("#requests").scrollIntoView();
  }
}

main().catch((error) => {
  if (!(error instanceof ApiError && error.status === 401)) {
    toast(errorMessage(error), { tone: "danger" });
  }
});
