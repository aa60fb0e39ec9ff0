// Calls to /api/v1 with the cookie session.
//
// Every mutating call carries X-CSRF-Token (the csrf_token cookie's value: double-submit).
// A 401 means the session ended: hooks registered with onSessionExpired run first (the create
// form saves its draft), then the browser goes to /login?next=<this page>.

import { loginUrl } from "../lib/next.js";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const expiryHooks = [];
let redirecting = false;

export class ApiError extends Error {
  constructor(status, error, retryAfter = null) {
    super((error && error.message) || "Request failed (HTTP " + status + ")");
    this.status = status;
    this.code = (error && error.code) || "http_" + status;
    this.details = (error && error.details) || null;
    this.retryAfter = retryAfter;
  }
}

export function readCookie(name) {
  const prefix = name + "=";
  for (const part of document.cookie.split(";")) {
    const item = part.trim();
    if (item.startsWith(prefix)) {
      return decodeURIComponent(item.slice(prefix.length));
    }
  }
  return null;
}

export function onSessionExpired(hook) {
  expiryHooks.push(hook);
}

// Signing out on purpose: requests still in flight will get 401s, which must not send the
// user to /login?next=… (or save a draft) on top of the sign-out's own navigation.
export function leaving() {
  redirecting = true;
}

export function sessionExpired() {
  if (redirecting) {
    return;
  }
  redirecting = true;
  for (const hook of expiryHooks) {
    try {
      hook();
    } catch (_error) {
      // A failing hook must not keep the user on a page that no longer works.
    }
  }
  window.location.assign(loginUrl(window.location.pathname + window.location.search));
}

export async function request(path, { method = "GET", json, body, headers = {}, signal,
  raw = false, noRedirect = false } = {}) {
  const finalHeaders = { Accept: "application/json", ...headers };
  let payload = body;
  if (json !== undefined) {
    finalHeaders["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  }
  if (!SAFE.has(method.toUpperCase())) {
    const csrf = readCookie("csrf_token");
    if (csrf) {
      finalHeaders["X-CSRF-Token"] = csrf;
    }
  }
  const response = await fetch(path, {
    method,
    headers: finalHeaders,
    body: payload,
    credentials: "same-origin",
    signal,
  });
  if (response.status === 401 && !noRedirect) {
    sessionExpired();
    throw new ApiError(401, { code: "unauthorized", message: "Your session has ended." });
  }
  if (!response.ok) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch (_ignored) {
      // not JSON
    }
    throw new ApiError(response.status, error, response.headers.get("Retry-After"));
  }
  if (raw) {
    return response;
  }
  if (response.status === 204) {
    return null;
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, options) => request(path, { ...options, method: "GET" }),
  post: (path, json, options) => request(path, { ...options, method: "POST", json }),
  patch: (path, json, options) => request(path, { ...options, method: "PATCH", json }),
  del: (path, options) => request(path, { ...options, method: "DELETE" }),
  form: (path, formData, options) =>
    request(path, { ...options, method: "POST", body: formData }),
};

// A friendly one-line message for an error from `request` (or any other error).
export function errorMessage(error) {
  if (!(error instanceof ApiError)) {
    return error && error.message ? error.message : String(error);
  }
  if (error.status === 429) {
    return "Too many attempts. Try again in " +
      (error.retryAfter ? error.retryAfter + " seconds." : "a moment.");
  }
  if (error.status >= 500) {
    return "The service had a problem (HTTP " + error.status + "). Please try again.";
  }
  return error.message;
}
