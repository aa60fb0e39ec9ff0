// The library's view state (tab, search, filters, sort, page, open item) <-> the page URL,
// so every view can be bookmarked and shared, and <-> the history API's query string.
// Pure functions (no DOM), tested in js_tests/filters.test.js.

export const KINDS = ["video", "image"];
export const SORTS = ["-created", "created", "title", "-title"];
export const STATUSES = ["queued", "in_progress", "completed", "failed", "cancelled"];
export const PAGE_SIZES = [12, 24, 48, 96];
export const DEFAULT_SIZE = 24;

export function defaultFilters() {
  return {
    kind: "video",
    q: "",
    model: "",
    status: [],
    from: "",
    to: "",
    tags: [],
    favorite: false,
    sort: "-created",
    page: 1,
    size: DEFAULT_SIZE,
    open: "",
  };
}

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

function list(values) {
  const out = [];
  for (const value of values) {
    for (const part of String(value).split(",")) {
      const item = part.trim();
      if (item && !out.includes(item)) {
        out.push(item);
      }
    }
  }
  return out;
}

function positiveInt(text, fallback) {
  const number = Number(text);
  return Number.isInteger(number) && number >= 1 ? number : fallback;
}

function validDate(text) {
  if (!DATE_RE.test(text || "")) {
    return "";
  }
  const [year, month, day] = text.split("-").map(Number);
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day ? text : "";
}

// Anything unknown or malformed falls back to the default: a hand-edited URL never breaks
// the page.
export function parseFilters(search) {
  const params = new URLSearchParams(search || "");
  const state = defaultFilters();
  const kind = params.get("kind");
  if (KINDS.includes(kind)) {
    state.kind = kind;
  }
  state.q = (params.get("q") || "").slice(0, 200);
  state.model = (params.get("model") || "").slice(0, 100);
  state.status = list(params.getAll("status")).filter((s) => STATUSES.includes(s));
  state.from = validDate(params.get("from"));
  state.to = validDate(params.get("to"));
  state.tags = list(params.getAll("tag")).slice(0, 20);
  state.favorite = ["1", "true", "yes"].includes((params.get("fav") || "").toLowerCase());
  const sort = params.get("sort");
  if (SORTS.includes(sort)) {
    state.sort = sort;
  }
  state.page = positiveInt(params.get("page"), 1);
  const size = positiveInt(params.get("size"), DEFAULT_SIZE);
  state.size = PAGE_SIZES.includes(size) ? size : DEFAULT_SIZE;
  state.open = (params.get("open") || "").slice(0, 64);
  return state;
}

// Only what differs from the defaults, in a fixed order, so equal views give equal URLs.
export function serializeFilters(state) {
  const defaults = defaultFilters();
  const params = new URLSearchParams();
  if (state.kind && state.kind !== defaults.kind) {
    params.set("kind", state.kind);
  }
  if (state.q && state.q.trim()) {
    params.set("q", state.q.trim());
  }
  if (state.model) {
    params.set("model", state.model);
  }
  for (const status of state.status || []) {
    params.append("status", status);
  }
  if (state.from) {
    params.set("from", state.from);
  }
  if (state.to) {
    params.set("to", state.to);
  }
  for (const tag of state.tags || []) {
    params.append("tag", tag);
  }
  if (state.favorite) {
    params.set("fav", "1");
  }
  if (state.sort && state.sort !== defaults.sort) {
    params.set("sort", state.sort);
  }
  if (state.page && state.page !== 1) {
    params.set("page", String(state.page));
  }
  if (state.size && state.size !== defaults.size) {
    params.set("size", String(state.size));
  }
  if (state.open) {
    params.set("open", state.open);
  }
  const text = params.toString();
  return text ? "?" + text : "";
}

// A calendar day in the viewer's time zone as an instant. `offsetMinutes` is what
// Date.prototype.getTimezoneOffset returns for that day (positive west of UTC); tests pass it
// explicitly so they do not depend on the machine's zone.
export function localDayStart(day, offsetMinutes = null) {
  const [year, month, date] = day.split("-").map(Number);
  if (offsetMinutes === null) {
    return new Date(year, month - 1, date).toISOString();
  }
  return new Date(Date.UTC(year, month - 1, date) + offsetMinutes * 60000).toISOString();
}

function nextDay(day) {
  const [year, month, date] = day.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, date + 1)).toISOString().slice(0, 10);
}

// The query string for GET /api/v1/{kind}s. The date range is inclusive of both days.
export function toApiQuery(state, offsetMinutes = null) {
  const params = new URLSearchParams();
  params.set("page", String(state.page || 1));
  params.set("size", String(state.size || DEFAULT_SIZE));
  params.set("sort", state.sort || "-created");
  if (state.q && state.q.trim()) {
    params.set("search", state.q.trim());
  }
  if (state.model) {
    params.set("model", state.model);
  }
  for (const status of state.status || []) {
    params.append("status", status);
  }
  if (state.from) {
    params.set("created_after", localDayStart(state.from, offsetMinutes));
  }
  if (state.to) {
    params.set("created_before", localDayStart(nextDay(state.to), offsetMinutes));
  }
  if (state.tags && state.tags.length) {
    params.set("tags", state.tags.join(","));
  }
  if (state.favorite) {
    params.set("favorite", "true");
  }
  return params.toString();
}

// A change of any filter sends the view back to page 1; paging itself keeps the filters.
export function withChange(state, changes) {
  const next = { ...state, ...changes };
  const paging = Object.keys(changes).every((key) => key === "page" || key === "open");
  if (!paging) {
    next.page = 1;
  }
  return next;
}

export function activeFilterCount(state) {
  let count = 0;
  if (state.model) count += 1;
  if (state.status && state.status.length) count += 1;
  if (state.from || state.to) count += 1;
  if (state.tags && state.tags.length) count += 1;
  if (state.favorite) count += 1;
  return count;
}

// Page numbers to show: first, last, and a window around the current page, with null gaps.
export function pageWindow(current, total, around = 1) {
  const pages = [];
  for (let page = 1; page <= total; page += 1) {
    if (page === 1 || page === total || Math.abs(page - current) <= around) {
      pages.push(page);
    } else if (pages[pages.length - 1] !== null) {
      pages.push(null);
    }
  }
  return pages;
}

// "21–40 of 1,234" for a page of a listing. Past the server's counting cap `total` is only a
// lower bound (`total_is_estimate`): "of 10,000+", and there is always a next page to ask for.
export function pageSummary(listing, pageNumber, size) {
  const total = listing.total || 0;
  const count = (listing.items || []).length;
  const estimate = Boolean(listing.total_is_estimate);
  const first = total && count ? (pageNumber - 1) * size + 1 : 0;
  const last = first ? first + count - 1 : 0;
  const pages = Math.max(1, listing.pages || 1);
  return {
    first,
    last,
    label: estimate ? `${total.toLocaleString("en")}+` : String(total),
    hasNext: estimate || pageNumber < pages,
    pages,
  };
}

export function parseTags(text) {
  return list([text || ""]).map((tag) => tag.slice(0, 50)).slice(0, 20);
}
