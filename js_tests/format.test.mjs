import { test } from "node:test";
import assert from "node:assert/strict";

import {
  describeParams, elapsedSeconds, formatBytes, formatDuration, formatElapsed, formatPercent,
  formatSeconds, isTerminal, parseBytes, progressView, relativeTime, statusLabel, statusTone,
  taskTitle, usagePercent,
} from "../app/static/js/lib/format.js";
import { model } from "./helpers.mjs";

test("every API status has a label and a tone", () => {
  const expected = {
    queued: ["Queued", "neutral"],
    in_progress: ["Generating", "info"],
    completed: ["Completed", "success"],
    failed: ["Failed", "danger"],
    cancelled: ["Cancelled", "muted"],
  };
  for (const [status, [label, tone]] of Object.entries(expected)) {
    assert.equal(statusLabel(status), label);
    assert.equal(statusTone(status), tone);
  }
  assert.equal(statusLabel("weird"), "weird");
  assert.ok(isTerminal("failed") && !isTerminal("in_progress"));
});

test("progress: indeterminate while queued or at 0, clamped, complete at 100", () => {
  assert.deepEqual(progressView({ status: "queued", progress: 0 }),
    { percent: 0, label: "Waiting…", indeterminate: true, tone: "info" });
  assert.equal(progressView({ status: "in_progress", progress: 0 }).label, "Starting…");
  assert.deepEqual(progressView({ status: "in_progress", progress: 42.4 }),
    { percent: 42, label: "42%", indeterminate: false, tone: "info" });
  assert.equal(progressView({ status: "in_progress", progress: 140 }).percent, 100);
  assert.equal(progressView({ status: "in_progress", progress: "x" }).indeterminate, true);
  assert.equal(progressView({ status: "completed", progress: 80 }).percent, 100);
  const failed = progressView({ status: "failed", progress: 30 });
  assert.deepEqual([failed.percent, failed.label, failed.tone], [30, "Failed", "danger"]);
});

test("durations read like a clock", () => {
  assert.equal(formatDuration(0), "0:00");
  assert.equal(formatDuration(7.9), "0:07");
  assert.equal(formatDuration(62), "1:02");
  assert.equal(formatDuration(3723), "1:02:03");
  assert.equal(formatDuration(-5), "0:00");
  assert.equal(formatDuration(undefined), "0:00");
});

test("elapsed time runs until the task ends, then stops", () => {
  const created = "2026-01-01T10:00:00Z";
  const now = Date.parse("2026-01-01T10:01:05Z");
  assert.equal(elapsedSeconds({ status: "in_progress", created_at: created }, now), 65);
  assert.equal(formatElapsed({ status: "in_progress", created_at: created }, now), "1:05");
  const done = { status: "completed", created_at: created, completed_at: "2026-01-01T10:00:12Z" };
  assert.equal(formatElapsed(done, now), "0:12");
  assert.equal(elapsedSeconds({ status: "queued" }, now), 0);
});

test("bytes in everyday units, and back", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1536), "1.5 KB");
  assert.equal(formatBytes(1024 ** 3), "1 GB");
  assert.equal(formatBytes(2.5 * 1024 ** 3), "2.5 GB");
  assert.equal(formatBytes(123456789), "118 MB");
  assert.equal(parseBytes("2 GB"), 2 * 1024 ** 3);
  assert.equal(parseBytes("2.5gb"), 2.5 * 1024 ** 3);
  assert.equal(parseBytes("500 MiB"), 500 * 1024 ** 2);
  assert.equal(parseBytes("1024"), 1024);
  assert.equal(parseBytes("lots"), null);
  for (const bytes of [0, 1024, 5 * 1024 ** 2, 3 * 1024 ** 3]) {
    assert.equal(parseBytes(formatBytes(bytes)), bytes);
  }
});

test("percentages and seconds", () => {
  assert.equal(usagePercent(512, 1024), 50);
  assert.equal(usagePercent(3000, 2000), 150);
  assert.equal(usagePercent(1, 0), 100);
  assert.equal(formatPercent(0.9312), "93.1%");
  assert.equal(formatPercent(null), "—");
  assert.equal(formatSeconds(1.234), "1.2 s");
  assert.equal(formatSeconds(42), "42 s");
  assert.equal(formatSeconds(125), "2:05");
});

test("relative times", () => {
  const now = Date.parse("2026-03-10T12:00:00Z");
  assert.equal(relativeTime("2026-03-10T11:59:40Z", now), "just now");
  assert.equal(relativeTime("2026-03-10T11:55:00Z", now), "5 min ago");
  assert.equal(relativeTime("2026-03-10T09:00:00Z", now), "3 h ago");
  assert.equal(relativeTime("2026-03-08T12:00:00Z", now), "2 d ago");
  assert.equal(relativeTime("2026-01-01T00:00:00Z", now), "2026-01-01");
});

test("titles fall back to the prompt", () => {
  assert.equal(taskTitle({ title: " Fox " }), "Fox");
  assert.equal(taskTitle({ prompt: "a  red\nfox" }), "a red fox");
  assert.equal(taskTitle({ prompt: "x".repeat(100) }, 10), "xxxxxxxxx…");
  assert.equal(taskTitle({ object: "image" }), "Untitled image");
});

test("parameters are shown with the catalog's labels", () => {
  const parts = describeParams({ duration: 15, hd: true, aspect_ratio: "9:16" },
    model("sora-2-pro"));
  assert.deepEqual(parts.map((p) => [p.label, p.value]), [
    ["Duration", "15 s"], ["HD", "Yes"], ["Aspect ratio", "9:16 portrait"],
  ]);
  assert.deepEqual(describeParams({ x: 1 }, null), [{ name: "x", label: "x", value: "1" }]);
});

test("sizes just under a unit boundary move up a unit", () => {
  assert.equal(formatBytes(1024 ** 3 - 14_000), "1 GB");
  assert.equal(formatBytes(1023), "1023 B");
});
