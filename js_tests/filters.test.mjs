import { test } from "node:test";
import assert from "node:assert/strict";

import {
  activeFilterCount, defaultFilters, localDayStart, pageSummary, pageWindow, parseFilters,
  parseTags, serializeFilters, toApiQuery, withChange,
} from "../app/static/js/lib/filters.js";

test("the default view has an empty URL", () => {
  assert.equal(serializeFilters(defaultFilters()), "");
  assert.deepEqual(parseFilters(""), defaultFilters());
});

test("a view survives a round trip through the URL", () => {
  const state = { ...defaultFilters(), kind: "image", q: "red fox", model: "flux-pro",
    status: ["completed", "failed"], from: "2026-01-02", to: "2026-01-31",
    tags: ["winter", "b&w"], favorite: true, sort: "title", page: 3, size: 48, open: "abc" };
  const url = serializeFilters(state);
  assert.equal(url, "?kind=image&q=red+fox&model=flux-pro&status=completed&status=failed" +
    "&from=2026-01-02&to=2026-01-31&tag=winter&tag=b%26w&fav=1&sort=title&page=3&size=48&open=abc");
  assert.deepEqual(parseFilters(url), state);
});

test("hand-edited URLs never break the page", () => {
  const state = parseFilters("?kind=audio&status=done&status=failed&from=2026-02-30&to=soon" +
    "&sort=random&page=-4&size=1000&fav=maybe&tag=,a,,a,b");
  assert.equal(state.kind, "video");
  assert.deepEqual(state.status, ["failed"]);
  assert.equal(state.from, "");
  assert.equal(state.to, "");
  assert.equal(state.sort, "-created");
  assert.equal(state.page, 1);
  assert.equal(state.size, 24);
  assert.equal(state.favorite, false);
  assert.deepEqual(state.tags, ["a", "b"]);
});

test("the API query maps the view, with an inclusive local date range", () => {
  const state = { ...defaultFilters(), q: " fox ", model: "sora-2", status: ["failed"],
    from: "2026-01-02", to: "2026-01-31", tags: ["a", "b"], favorite: true, page: 2 };
  // UTC+1 (offset -60): local midnight is 23:00 UTC the day before.
  const query = new URLSearchParams(toApiQuery(state, -60));
  assert.equal(query.get("search"), "fox");
  assert.equal(query.get("model"), "sora-2");
  assert.deepEqual(query.getAll("status"), ["failed"]);
  assert.equal(query.get("created_after"), "2026-01-01T23:00:00.000Z");
  assert.equal(query.get("created_before"), "2026-01-31T23:00:00.000Z");
  assert.equal(query.get("tags"), "a,b");
  assert.equal(query.get("favorite"), "true");
  assert.equal(query.get("page"), "2");
  assert.equal(query.get("size"), "24");
  assert.equal(query.get("sort"), "-created");
  const plain = new URLSearchParams(toApiQuery(defaultFilters(), 0));
  assert.deepEqual([...plain.keys()], ["page", "size", "sort"]);
});

test("local day starts", () => {
  assert.equal(localDayStart("2026-06-01", 0), "2026-06-01T00:00:00.000Z");
  assert.equal(localDayStart("2026-06-01", 300), "2026-06-01T05:00:00.000Z");
});

test("changing a filter goes back to page 1; paging keeps the filters", () => {
  const state = { ...defaultFilters(), q: "fox", page: 4 };
  assert.equal(withChange(state, { model: "veo3" }).page, 1);
  const paged = withChange(state, { page: 5 });
  assert.equal(paged.page, 5);
  assert.equal(paged.q, "fox");
  assert.equal(withChange(state, { open: "x" }).page, 4);
});

test("filter count and pagination window", () => {
  assert.equal(activeFilterCount(defaultFilters()), 0);
  assert.equal(activeFilterCount({ ...defaultFilters(), model: "x", status: ["failed"],
    from: "2026-01-01", favorite: true, tags: ["a"] }), 5);
  assert.deepEqual(pageWindow(1, 1), [1]);
  assert.deepEqual(pageWindow(5, 10), [1, null, 4, 5, 6, null, 10]);
  assert.deepEqual(pageWindow(2, 4), [1, 2, 3, 4]);
  assert.deepEqual(parseTags(" a, b ,a,,c "), ["a", "b", "c"]);
});

test("page summary: exact totals, empty pages, and capped counts that promise more", () => {
  const items = (n) => Array.from({ length: n }, (_, i) => ({ id: String(i) }));
  assert.deepEqual(pageSummary({ items: items(20), total: 45, pages: 3 }, 2, 20),
    { first: 21, last: 40, label: "45", hasNext: true, pages: 3 });
  assert.deepEqual(pageSummary({ items: items(5), total: 45, pages: 3 }, 3, 20),
    { first: 41, last: 45, label: "45", hasNext: false, pages: 3 });
  assert.deepEqual(pageSummary({ items: [], total: 0, pages: 0 }, 1, 20),
    { first: 0, last: 0, label: "0", hasNext: false, pages: 1 });
  const capped = { items: items(20), total: 10000, pages: 500, total_is_estimate: true };
  const summary = pageSummary(capped, 500, 20);
  assert.equal(summary.label, "10,000+");
  assert.equal(summary.hasNext, true);
  assert.deepEqual([summary.first, summary.last], [9981, 10000]);
});
