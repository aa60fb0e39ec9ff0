// SVG charts drawn from the geometry in lib/chart.js. Colours come from CSS classes
// (.series-N), every shape has a <title> tooltip, and each chart carries a visually hidden
// table with the same numbers for screen readers.

import { dayLabelStep, horizontalBars, stackedColumns } from "../lib/chart.js";
import { h, svg } from "./dom.js";

// Charts are drawn at their container's width (1 SVG unit = 1 CSS pixel, so text keeps its
// size) and redrawn when the container is resized.
const drawn = new Map();
const observer = typeof ResizeObserver === "undefined" ? null
  : new ResizeObserver((entries) => {
    for (const entry of entries) {
      const redraw = drawn.get(entry.target);
      if (redraw && Math.abs(entry.contentRect.width - redraw.width) > 8) redraw.fn();
    }
  });

function widthOf(container, draw) {
  const width = Math.max(300, Math.round(container.clientWidth || 640));
  drawn.set(container, { width, fn: draw });
  observer?.observe(container);
  return width;
}

function srTable(caption, headers, rows) {
  // The wrapper hides it: a table itself grows to fit its cells whatever its width says.
  return h("div", { class: "visually-hidden" }, h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell)))))));
}

function fitLabel(label, width) {
  const chars = Math.max(4, Math.floor((width - 14) / 7));
  return label.length > chars ? label.slice(0, chars - 1) + "…" : label;
}

export function legend(keys) {
  return h("div", { class: "legend" }, keys.map((key, index) =>
    h("span", { class: "legend-item" }, h("span", { class: "swatch series-" + (index % 8) }), key)));
}

export function columnChart(container, options) {
  const { labels, series, caption, format = String } = options;
  const WIDTH = widthOf(container, () => columnChart(container, options));
  if (!series.length || series.every((s) => s.values.every((v) => !v))) {
    container.replaceChildren(h("p", { class: "chart-empty" }, "No tasks in this period."));
    return;
  }
  const height = 260;
  const geometry = stackedColumns(labels, series, { width: WIDTH, height });
  const step = dayLabelStep(labels.length, geometry.plot.right - geometry.plot.left);
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${height}`, role: "img",
    "aria-label": caption },
  svg("g", { class: "axis" }, geometry.ticks.map((tick) => svg("g", {},
    svg("line", { class: "grid-line", x1: geometry.plot.left, x2: geometry.plot.right,
      y1: tick.y, y2: tick.y }),
    svg("text", { x: geometry.plot.left - 8, y: tick.y + 4, "text-anchor": "end" },
      format(tick.value))))),
  geometry.columns.map((column) => svg("g", {},
    column.segments.map((segment) => svg("rect", {
      class: "seg series-" + (segment.index % 8), x: segment.x, y: segment.y,
      width: column.width, height: Math.max(0.5, segment.h), rx: 2,
    }, svg("title", {}, `${column.label} · ${segment.key}: ${format(segment.value)}`))))),
  // Labels counted back from the newest day, so today is always labelled.
  svg("g", { class: "axis" }, geometry.columns.map((column, index) =>
    (geometry.columns.length - 1 - index) % step === 0
      ? svg("text", { x: column.center, y: height - 10, "text-anchor": "middle" },
        column.label.slice(5))
      : null)));
  container.replaceChildren(root, legend(series.map((s) => s.key)),
    srTable(caption, ["Day", ...series.map((s) => s.key)],
      labels.map((label, i) => [label, ...series.map((s) => format(s.values[i] || 0))])));
}

export function barChart(container, options) {
  const { rows, caption, max, format = String, keys = null, empty = "Nothing to show yet." } =
    options;
  const WIDTH = widthOf(container, () => barChart(container, options));
  if (!rows.length) {
    container.replaceChildren(h("p", { class: "chart-empty" }, empty));
    return;
  }
  const labelWidth = Math.min(170, Math.round(WIDTH * 0.3));
  const geometry = horizontalBars(rows, { width: WIDTH, max, labelWidth });
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${geometry.height}`, role: "img",
    "aria-label": caption },
  geometry.bars.map((bar) => svg("g", {},
    svg("text", { class: "bar-label", x: geometry.plotLeft - 10, y: bar.y + 13,
      "text-anchor": "end" }, fitLabel(bar.label, labelWidth)),
    svg("rect", { class: "track", x: geometry.plotLeft, y: bar.y, width: geometry.plotWidth,
      height: 18, rx: 4 }),
    bar.segments.map((segment) => svg("rect", {
      class: "seg series-" + ((keys ? segment.index : 0) % 8), x: segment.x, y: segment.y,
      width: Math.max(0, segment.w), height: 18, rx: 4,
    }, svg("title", {}, `${bar.label}${keys ? " · " + segment.key : ""}: ${format(segment.value)}`))),
    svg("text", { class: "value-label", x: Math.min(bar.end, geometry.plotLeft +
      geometry.plotWidth) + 8, y: bar.y + 13 }, format(bar.total)))));
  container.replaceChildren(root, keys ? legend(keys) : "",
    srTable(caption, ["", ...(keys || ["Value"])],
      rows.map((row) => [row.label, ...row.segments.map((s) => format(s.value))])));
}
