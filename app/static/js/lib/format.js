// Words and numbers for people: task status, progress, elapsed time, sizes, dates.
// Pure functions (no DOM), tested in js_tests/format.test.js.

export const STATUSES = ["queued", "in_progress", "completed", "failed", "cancelled"];
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const STATUS_LABELS = {
  queued: "Queued",
  in_progress: "Generating",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

// The chip's colour family; CSS maps each tone to accessible colours in both themes.
const STATUS_TONES = {
  queued: "neutral",
  in_progress: "info",
  completed: "success",
  failed: "danger",
  cancelled: "muted",
};

export function isTerminal(status) {
  return TERMINAL.has(status);
}

export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status || "Unknown");
}

export function statusTone(status) {
  return STATUS_TONES[status] || "neutral";
}

function clampPercent(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) {
    return 0;
  }
  return Math.min(100, Math.max(0, Math.round(number)));
}

// What the progress bar shows. A queued task (or one with no progress reported yet) gets an
// indeterminate bar rather than a misleading 0 %.
export function progressView(task) {
  const status = task?.status;
  if (status === "completed") {
    return { percent: 100, label: "100%", indeterminate: false, tone: "success" };
  }
  if (status === "failed" || status === "cancelled") {
    const percent = clampPercent(task.progress);
    return { percent, label: statusLabel(status), indeterminate: false, tone: statusTone(status) };
  }
  const percent = clampPercent(task?.progress);
  if (status === "queued" || percent === 0) {
    return {
      percent: 0,
      label: status === "queued" ? "Waiting…" : "Starting…",
      indeterminate: true,
      tone: "info",
    };
  }
  return { percent, label: percent + "%", indeterminate: false, tone: "info" };
}

// 7 s → "0:07", 62 s → "1:02", 3723 s → "1:02:03". Negative or missing → "0:00".
export function formatDuration(totalSeconds) {
  let seconds = Math.floor(Number(totalSeconds));
  if (!Number.isFinite(seconds) || seconds < 0) {
    seconds = 0;
  }
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  const pad = (value) => String(value).padStart(2, "0");
  return hours > 0 ? hours + ":" + pad(minutes) + ":" + pad(rest) : minutes + ":" + pad(rest);
}

function toMillis(value) {
  if (value === null || value === undefined || value === "") {
    return null;
  }
  const millis = value instanceof Date ? value.getTime()
    : typeof value === "number" ? value : Date.parse(value);
  return Number.isFinite(millis) ? millis : null;
}

// Seconds the task has taken: from creation until it ended, or until `now` while it runs.
export function elapsedSeconds(task, now = Date.now()) {
  const start = toMillis(task?.created_at);
  if (start === null) {
    return 0;
  }
  const end = isTerminal(task.status)
    ? toMillis(task.completed_at) ?? toMillis(task.updated_at) ?? toMillis(now)
    : toMillis(now);
  return Math.max(0, (end - start) / 1000);
}

export function formatElapsed(task, now = Date.now()) {
  return formatDuration(elapsedSeconds(task, now));
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

// Binary multiples with the everyday names: 1536 → "1.5 KB", 1073741824 → "1 GB".
export function formatBytes(bytes) {
  let value = Number(bytes);
  if (!Number.isFinite(value) || value <= 0) {
    return "0 B";
  }
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  let digits = value >= 100 || unit === 0 ? 0 : value >= 10 ? 1 : 2;
  if (Number(value.toFixed(digits)) >= 1024 && unit < UNITS.length - 1) {
    // 1023.9 MB would print as "1024 MB": say "1 GB" instead.
    value /= 1024;
    unit += 1;
    digits = 2;
  }
  const text = value.toFixed(digits).replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
  return text + " " + UNITS[unit];
}

// "2 GB", "500 MB", "1.5 GB" → bytes (for the admin quota editor). null when unreadable.
export function parseBytes(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(String(text));
  if (!match) {
    return null;
  }
  const unit = (match[2] || "b").toLowerCase().replace("i", "");
  const powers = { b: 0, k: 1, kb: 1, m: 2, mb: 2, g: 3, gb: 3, t: 4, tb: 4 };
  if (!(unit in powers)) {
    return null;
  }
  return Math.round(Number(match[1]) * 1024 ** powers[unit]);
}

export function usagePercent(used, total) {
  const u = Number(used) || 0;
  const t = Number(total) || 0;
  if (t <= 0) {
    return u > 0 ? 100 : 0;
  }
  return Math.round((u * 1000) / t) / 10;
}

// "just now", "5 min ago", "3 h ago", "2 d ago", then the date.
export function relativeTime(value, now = Date.now()) {
  const then = toMillis(value);
  if (then === null) {
    return "";
  }
  const seconds = Math.round((toMillis(now) - then) / 1000);
  if (seconds < 45) {
    return "just now";
  }
  if (seconds < 3600) {
    return Math.max(1, Math.round(seconds / 60)) + " min ago";
  }
  if (seconds < 86400) {
    return Math.round(seconds / 3600) + " h ago";
  }
  if (seconds < 7 * 86400) {
    return Math.round(seconds / 86400) + " d ago";
  }
  return new Date(then).toISOString().slice(0, 10);
}

export function formatDateTime(value) {
  const millis = toMillis(value);
  if (millis === null) {
    return "—";
  }
  const date = new Date(millis);
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

// "Nov 25, 14:03:07": compact, for tables of recent events.
export function formatShortDateTime(value) {
  const millis = toMillis(value);
  if (millis === null) {
    return "—";
  }
  return new Date(millis).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) {
    return "—";
  }
  const value = Number(seconds);
  if (value < 60) {
    return (value < 10 ? value.toFixed(1) : Math.round(value)) + " s";
  }
  return formatDuration(value);
}

export function formatPercent(ratio) {
  if (ratio === null || ratio === undefined || !Number.isFinite(Number(ratio))) {
    return "—";
  }
  return Math.round(Number(ratio) * 1000) / 10 + "%";
}

// The title people see for a task: its title, else the start of its prompt.
export function taskTitle(task, length = 60) {
  const title = (task?.title || "").trim();
  if (title) {
    return title;
  }
  const prompt = (task?.prompt || "").trim().replace(/\s+/g, " ");
  if (!prompt) {
    return task?.object === "image" ? "Untitled image" : "Untitled video";
  }
  return prompt.length > length ? prompt.slice(0, length - 1).trimEnd() + "…" : prompt;
}

// Parameters as "Duration: 10 s · Aspect ratio: 16:9 landscape" using the catalog's labels.
export function describeParams(params, model) {
  const parts = [];
  for (const [name, value] of Object.entries(params || {})) {
    const spec = model?.parameters?.find((param) => param.name === name);
    const label = spec?.label || name;
    let shown = value;
    if (spec?.allowed) {
      const option = spec.allowed.find((item) => item.value === value);
      shown = option ? option.label ?? option.value : value;
    } else if (typeof value === "boolean") {
      shown = value ? "Yes" : "No";
    }
    parts.push({ name, label, value: String(shown) });
  }
  return parts;
}
