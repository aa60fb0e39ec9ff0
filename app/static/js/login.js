// Sign-in / registration page and the placeholder home page. Loaded as an external file:
// the Content-Security-Policy forbids inline scripts.
"use strict";

(function () {
  const AUTH_API = "/api/v1/auth";
  const LOGIN_PATH = "/login";

  function readCookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const item = part.trim();
      if (item.startsWith(prefix)) {
        return decodeURIComponent(item.slice(prefix.length));
      }
    }
    return null;
  }

  // Where to go after signing in. Only a path on this same site is honoured: anything that
  // could leave it ("https://…", "//host", "/\host", "javascript:…") falls back to "/".
  function safeNext(raw) {
    if (typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") ||
        raw.startsWith("/\\")) {
      return "/";
    }
    let url;
    try {
      url = new URL(raw, window.location.origin);
    } catch (_error) {
      return "/";
    }
    if (url.origin !== window.location.origin || url.pathname === LOGIN_PATH) {
      return "/";
    }
    return url.pathname + url.search + url.hash;
  }

  function showMessage(text, ok) {
    const box = document.getElementById("auth-message");
    if (!box) {
      return;
    }
    box.textContent = text;
    box.classList.toggle("is-ok", Boolean(ok));
    box.hidden = !text;
  }

  async function errorText(response) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch (_ignored) {
      // Not JSON: fall through to the generic message.
    }
    if (response.status === 429) {
      const wait = response.headers.get("Retry-After");
      return "Too many attempts. Try again in " + (wait ? wait + " seconds." : "a while.");
    }
    if (error && Array.isArray(error.details) && error.details.length > 0) {
      const first = error.details[0];
      return (first.field ? first.field + ": " : "") + first.message;
    }
    if (error && error.message) {
      return error.message;
    }
    return "Something went wrong (HTTP " + response.status + ").";
  }

  async function postJson(path, body) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const csrf = readCookie("csrf_token");
    if (csrf) {
      headers["X-CSRF-Token"] = csrf;
    }
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function signIn(identifier, password) {
    const response = await postJson(AUTH_API + "/login?set_cookie=1", {
      username_or_email: identifier,
      password: password,
    });
    if (!response.ok) {
      throw new Error(await errorText(response));
    }
    const next = new URLSearchParams(window.location.search).get("next");
    window.location.assign(safeNext(next));
  }

  function withBusy(form, action) {
    return async function (event) {
      event.preventDefault();
      if (!form.reportValidity()) {
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      showMessage("");
      try {
        await action(new FormData(form));
      } catch (error) {
        showMessage(error.message || String(error));
      } finally {
        button.disabled = false;
      }
    };
  }

  function selectTab(name) {
    for (const which of ["signin", "register"]) {
      const active = which === name;
      const tab = document.getElementById("tab-" + which);
      tab.classList.toggle("is-active", active);
      tab.setAttribute("aria-selected", String(active));
      document.getElementById(which + "-form").hidden = !active;
    }
    showMessage("");
  }

  function initLoginPage(signinForm) {
    const registerForm = document.getElementById("register-form");
    document.getElementById("tab-signin").addEventListener("click", () => selectTab("signin"));
    document.getElementById("tab-register").addEventListener("click", () => selectTab("register"));

    signinForm.addEventListener("submit", withBusy(signinForm, async (data) => {
      await signIn(String(data.get("username_or_email")).trim(), String(data.get("password")));
    }));

    registerForm.addEventListener("submit", withBusy(registerForm, async (data) => {
      const username = String(data.get("username")).trim();
      const password = String(data.get("password"));
      const response = await postJson(AUTH_API + "/register", {
        username: username,
        email: String(data.get("email")).trim(),
        password: password,
      });
      if (!response.ok) {
        throw new Error(await errorText(response));
      }
      showMessage("Account created. Signing you in…", true);
      await signIn(username, password);
    }));
  }

  async function initHomePage(logoutButton) {
    logoutButton.addEventListener("click", async () => {
      logoutButton.disabled = true;
      try {
        await postJson(AUTH_API + "/logout");
      } finally {
        window.location.assign(LOGIN_PATH);
      }
    });
    const response = await fetch(AUTH_API + "/me", { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign(LOGIN_PATH + "?next=" + encodeURIComponent("/"));
      return;
    }
    if (!response.ok) {
      showMessage(await errorText(response));
      return;
    }
    const user = await response.json();
    document.getElementById("current-user").textContent =
      user.username + (user.is_admin ? " (admin)" : "");
    document.getElementById("welcome-name").textContent = ", " + user.username;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const signinForm = document.getElementById("signin-form");
    if (signinForm) {
      initLoginPage(signinForm);
    }
    const logoutButton = document.getElementById("logout-button");
    if (logoutButton) {
      initHomePage(logoutButton);
    }
  });
})();
