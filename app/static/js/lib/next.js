// Where to go after signing in. Only a path on this same site is honoured: anything that
// could leave it ("https://…", "//host", "/\host", "javascript:…") or loop back to the
// sign-in page falls back to "/". Pure (tested in js_tests/next.test.js).

export const LOGIN_PATH = "/login";

export function safeNext(raw, origin) {
  if (typeof raw !== "string" || !raw.startsWith("/") || raw.startsWith("//") ||
      raw.startsWith("/\\") || /[\u0000-\u001f]/.test(raw)) {
    return "/";
  }
  let url;
  try {
    url = new URL(raw, origin);
  } catch (_error) {
    return "/";
  }
  if (url.origin !== new URL(origin).origin || url.pathname === LOGIN_PATH) {
    return "/";
  }
  return url.pathname + url.search + url.hash;
}

export function loginUrl(pathWithQuery) {
  return LOGIN_PATH + "?next=" + encodeURIComponent(pathWithQuery || "/");
}
