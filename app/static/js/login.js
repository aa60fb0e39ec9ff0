// Sign-in and registration (/login). Errors appear next to the field they are about; after
// signing in the browser goes to ?next= when that is a path on this site, else to the studio.

import { readCookie } from "./ui/api.js";
import { safeNext } from "./lib/next.js";
import { fieldErrors } from "./lib/catalog.js";
import { showFieldErrors } from "./ui/params.js";

const AUTH_API = "/api/v1/auth";

function showMessage(text, ok = false) {
  const box = document.getElementById("auth-message");
  box.textContent = text || "";
  box.className = "alert " + (ok ? "tone-success" : "tone-danger");
  box.hidden = !text;
}

async function errorOf(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch (_ignored) {
    // Not JSON: the generic message below.
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    return { message: "Too many attempts. Try again in " + (wait ? wait + " seconds." : "a while.") };
  }
  return {
    message: error?.message || "Something went wrong (HTTP " + response.status + ").",
    code: error?.code || null,
    details: error?.details || null,
  };
}

function postJson(path, body) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const csrf = readCookie("csrf_token");
  if (csrf) {
    headers["X-CSRF-Token"] = csrf;
  }
  return fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: JSON.stringify(body),
  });
}

// Browser-side checks first (the same limits the API enforces), so most mistakes are shown
// at once and next to the field.
function localErrors(form) {
  const errors = {};
  for (const input of form.querySelectorAll("input")) {
    if (!input.checkValidity()) {
      const field = input.closest("[data-field]").dataset.field;
      errors[field] = input.validity.valueMissing ? "Required." : input.validationMessage;
    }
  }
  return errors;
}

async function signIn(identifier, password) {
  const response = await postJson(AUTH_API + "/login?set_cookie=1", {
    username_or_email: identifier,
    password,
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) {
      error.fieldErrors = { password: "Wrong username, e-mail or password." };
      error.message = "";
    }
    throw error;
  }
  const next = new URLSearchParams(window.location.search).get("next");
  window.location.assign(safeNext(next, window.location.origin));
}

function handle(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage("");
    const errors = localErrors(form);
    showFieldErrors(form, errors);
    if (Object.keys(errors).length) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.classList.add("is-busy");
    try {
      await action(new FormData(form));
    } catch (error) {
      const placed = error.fieldErrors || fieldErrors(error.details || [],
        [...form.querySelectorAll("[data-field]")].map((el) => el.dataset.field));
      const unplaced = [...(placed[""] || [])];
      delete placed[""];
      unplaced.push(...showFieldErrors(form, placed));
      showMessage([error.message && !Object.keys(placed).length ? error.message : "",
        ...unplaced].filter(Boolean).join(" "));
      form.querySelector("[aria-invalid=true]")?.focus();
      button.disabled = false;
      button.classList.remove("is-busy");
    }
  });
}

function selectTab(name, focus = false) {
  for (const which of ["signin", "register"]) {
    const active = which === name;
    const tab = document.getElementById("tab-" + which);
    tab.classList.toggle("is-active", active);
    tab.setAttribute("aria-selected", String(active));
    tab.tabIndex = active ? 0 : -1;
    document.getElementById(which + "-form").hidden = !active;
    if (active && focus) {
      tab.focus();
    }
  }
  showMessage("");
  const form = document.getElementById(name + "-form");
  form.querySelector("input")?.focus();
}

function init() {
  const signinTab = document.getElementById("tab-signin");
  const registerTab = document.getElementById("tab-register");
  signinTab.addEventListener("click", () => selectTab("signin"));
  registerTab.addEventListener("click", () => selectTab("register"));
  // Arrow keys move between tabs (WAI-ARIA tabs pattern).
  for (const tab of [signinTab, registerTab]) {
    tab.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        selectTab(tab === signinTab ? "register" : "signin", true);
      }
    });
  }
  if (window.location.hash === "#register") {
    selectTab("register");
  }

  const signinForm = document.getElementById("signin-form");
  handle(signinForm, async (data) => {
    await signIn(String(data.get("username_or_email")).trim(), String(data.get("password")));
  });

  const registerForm = document.getElementById("register-form");
  handle(registerForm, async (data) => {
    const username = String(data.get("username")).trim();
    const password = String(data.get("password"));
    const response = await postJson(AUTH_API + "/register", {
      username,
      email: String(data.get("email")).trim(),
      password,
    });
    if (!response.ok) {
      const error = await errorOf(response);
      const field = { email_taken: "email", username_taken: "username" }[error.code];
      if (field) {
        error.fieldErrors = { [field]: error.message };
        error.message = "";
      }
      throw error;
    }
    showMessage("Account created. Signing you in…", true);
    await signIn(username, password);
  });
}

init();
