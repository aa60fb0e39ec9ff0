import { test } from "node:test";
import assert from "node:assert/strict";

import { loginUrl, safeNext } from "../app/static/js/lib/next.js";
import { DRAFT_KEY, isEmptyDraft, parseDraft, serializeDraft } from "../app/static/js/lib/draft.js";
import { applyEvent, createQueue, queueView, runningCount } from "../app/static/js/lib/queue.js";
import { horizontalBars, niceCeil, stackedColumns, ticks } from "../app/static/js/lib/chart.js";
import {
  brushInImagePixels, maskFromStrokes, paintedFraction, toImagePoint,
} from "../app/static/js/lib/mask.js";

const ORIGIN = "https://studio.example";

test("?next= only ever leads to a page of this site", () => {
  assert.equal(safeNext("/library?kind=image#x", ORIGIN), "/library?kind=image#x");
  for (const bad of ["https://evil.example/", "//evil.example", "/\\evil.example",
    "javascript:alert(1)", "/login?next=/", "", null, "/\u0000x", "library"]) {
    assert.equal(safeNext(bad, ORIGIN), "/", String(bad));
  }
  assert.equal(loginUrl("/library?q=a b"), "/login?next=%2Flibrary%3Fq%3Da%20b");
});

test("the draft keeps what was typed, for its page, and nothing else", () => {
  const saved = serializeDraft({ page: "/", model: "sora-2", prompt: "a fox", title: "Fox",
    n: 3, params: { duration: 15, hd: true, nested: { no: 1 } },
    images: ["https://example.com/a.png", "data:image/png;base64,AAAA", "file:///etc/passwd"],
    password: "secret" }, 1000);
  assert.ok(!saved.includes("secret"));
  assert.ok(!saved.includes("passwd"));
  const draft = parseDraft(saved, "/", 2000);
  assert.deepEqual(draft, { page: "/", model: "sora-2", prompt: "a fox", title: "Fox", n: 3,
    params: { duration: 15, hd: true },
    images: ["https://example.com/a.png", "data:image/png;base64,AAAA"] });
  assert.equal(parseDraft(saved, "/image", 2000), null);
  assert.equal(parseDraft(saved, "/", 1000 + 86_400_001), null);
  assert.equal(parseDraft("{not json", "/"), null);
  assert.equal(typeof DRAFT_KEY, "string");
  assert.ok(isEmptyDraft({ prompt: " ", title: "", images: [] }));
  const huge = "data:image/png;base64," + "A".repeat(2_000_000);
  assert.deepEqual(parseDraft(serializeDraft({ page: "/", images: [huge] }, 0), "/", 0).images, []);
});

test("the queue follows SSE events and says when a task finishes", () => {
  const queue = createQueue([{ id: "a", object: "video", status: "queued", progress: 0,
    created_at: "2026-01-01T00:00:00Z" }]);
  let result = applyEvent(queue, "task.updated", { id: "a", status: "in_progress", progress: 40,
    updated_at: "2026-01-01T00:00:05Z", title: null });
  assert.deepEqual(result, { changed: true, finished: false, needsFetch: false });
  assert.equal(queue.get("a").progress, 40);
  assert.equal(queue.get("a").started_at, "2026-01-01T00:00:05Z");
  result = applyEvent(queue, "task.completed", { id: "a", status: "completed", progress: 100,
    updated_at: "2026-01-01T00:00:09Z" });
  assert.equal(result.finished, true);
  assert.equal(result.needsFetch, true); // its media (thumbnail, URL) come from the API
  assert.equal(queue.get("a").completed_at, "2026-01-01T00:00:09Z");
  // A repeated terminal event is not a second "finished".
  assert.equal(applyEvent(queue, "task.completed", { id: "a", status: "completed" }).finished,
    false);
  result = applyEvent(queue, "task.created", { id: "b", object: "image", status: "queued",
    updated_at: "2026-01-01T00:01:00Z" });
  assert.equal(result.needsFetch, true);
  assert.equal(runningCount(queue), 1);
  assert.deepEqual(queueView(queue).map((t) => t.id), ["b", "a"]);
  applyEvent(queue, "task.failed", { id: "b", status: "failed", error_code: "upstream_error" });
  assert.equal(queue.get("b").error.code, "upstream_error");
  assert.equal(applyEvent(queue, "task.deleted", { id: "b" }).removed, true);
  assert.equal(applyEvent(queue, "task.updated", {}).changed, false);
});

test("running tasks stay visible above the limit", () => {
  const tasks = Array.from({ length: 5 }, (_, i) => ({ id: "t" + i, status: i < 3 ? "queued"
    : "completed", created_at: "2026-01-01T00:00:0" + i + "Z" }));
  const view = queueView(createQueue(tasks), 2);
  assert.deepEqual(view.map((t) => t.id), ["t2", "t1", "t0"]);
});

test("chart scales and shapes", () => {
  assert.equal(niceCeil(0.8), 1);
  assert.equal(niceCeil(7), 10);
  assert.equal(niceCeil(23), 25);
  assert.deepEqual(ticks(4, 4, { integer: true }), [0, 1, 2, 3, 4]);
  assert.deepEqual(ticks(3, 4, { integer: true }), [0, 1, 2, 3]);
  assert.deepEqual(ticks(1, 4), [0, 0.25, 0.5, 0.75, 1]);
  const chart = stackedColumns(["d1", "d2"], [{ key: "a", values: [1, 0] },
    { key: "b", values: [2, 4] }], { width: 200, height: 100, pad: 20 });
  assert.equal(chart.max, 4);
  assert.equal(chart.columns[0].total, 3);
  assert.deepEqual(chart.columns[0].segments.map((s) => s.key), ["a", "b"]);
  assert.deepEqual(chart.columns[1].segments.map((s) => s.key), ["b"]);
  const [first, second] = chart.columns[0].segments;
  assert.ok(Math.abs(first.h * 2 - second.h) < 1e-9, "heights are proportional");
  assert.ok(Math.abs(chart.columns[1].segments[0].y - chart.plot.top) < 1e-9, "tallest fills");
  const bars = horizontalBars([{ label: "x", segments: [{ key: "v", value: 0.5 }] }],
    { width: 300, labelWidth: 100, max: 1 });
  assert.ok(Math.abs(bars.bars[0].segments[0].w - bars.plotWidth / 2) < 1e-9);
});

test("the mask is transparent exactly where the user painted", () => {
  // 2×1 pixels: the first painted (alpha 200), the second untouched.
  const strokes = new Uint8ClampedArray([236, 72, 153, 200, 0, 0, 0, 0]);
  assert.deepEqual([...maskFromStrokes(strokes)], [0, 0, 0, 0, 0, 0, 0, 255]);
  assert.equal(paintedFraction(strokes), 0.5);
  assert.equal(paintedFraction(new Uint8ClampedArray(0)), 0);
  const rect = { left: 10, top: 20, width: 100, height: 50 };
  assert.deepEqual(toImagePoint(60, 45, rect, 1000, 500), { x: 500, y: 250 });
  assert.deepEqual(toImagePoint(0, 999, rect, 1000, 500), { x: 0, y: 500 });
  assert.equal(brushInImagePixels(40, rect, 1000), 400);
});
