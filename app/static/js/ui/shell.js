// What every signed-in page shares: the header (active link, admin link, user menu, sign
// out), the simulator banner, and the current user.

import { api, leaving, onSessionExpired } from "./api.js";
import { $, $$ } from "./dom.js";
import { DRAFT_KEY } from "../lib/draft.js";

let currentUser = null;

export function user() {
  return currentUser;
}

async function showSimulatorBanner() {
  const banner = document.getElementById("sim-banner");
  if (!banner) {
    return;
  }
  try {
    const response = await fetch("/health", { credentials: "same-origin" });
    const health = await response.json();
    banner.hidden = !health.simulated_upstream;
    document.body.classList.toggle("has-banner", Boolean(health.simulated_upstream));
  } catch (_error) {
    banner.hidden = true;
  }
}

function markActive() {
  const path = window.location.pathname;
  for (const link of $$(".nav-link")) {
    const active = link.getAttribute("href") === path;
    link.classList.toggle("is-active", active);
    if (active) {
      link.setAttribute("aria-current", "page");
    }
  }
}

function wireMenu() {
  const toggle = $("#nav-toggle");
  const nav = $("#primary-nav");
  if (toggle && nav) {
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      nav.classList.toggle("is-open", open);
    });
  }
}

export async function signOut() {
  leaving();
  try {
    await api.post("/api/v1/auth/logout", undefined, { noRedirect: true });
  } catch (_error) {
    // Signed out already or the session is gone: the sign-in page is the right place anyway.
  }
  sessionStorage.removeItem(DRAFT_KEY);
  window.location.assign("/login");
}

export async function initShell() {
  markActive();
  wireMenu();
  const logout = $("#logout-button");
  if (logout) {
    logout.addEventListener("click", () => {
      logout.disabled = true;
      signOut();
    });
  }
  showSimulatorBanner();
  currentUser = await api.get("/api/v1/auth/me");
  const name = $("#current-user");
  if (name) {
    name.textContent = currentUser.username;
  }
  const avatar = $("#avatar");
  if (avatar) {
    avatar.textContent = (currentUser.username[0] || "?").toUpperCase();
  }
  for (const link of $$("[data-admin-only]")) {
    link.hidden = !currentUser.is_admin;
  }
  document.body.classList.add("is-ready");
  return currentUser;
}

export { onSessionExpired };
