// Geometry for the admin dashboard's SVG charts: scales, ticks and shapes as plain numbers.
// No DOM here (tested in js_tests/chart.test.js); js/ui/charts.js turns shapes into SVG.

// The smallest "nice" number (1, 2, 2.5, 5 × 10^k) at or above `value`.
export function niceCeil(value) {
  if (!(value > 0)) {
    return 1;
  }
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value - 1e-9) {
      return step * power;
    }
  }
  return 10 * power;
}

// Evenly spaced ticks from 0 covering `max`. Counts (integer: true) never get fractional
// ticks: a maximum of 3 tasks gives 0, 1, 2, 3 rather than 0, 0.75, 1.5 …
export function ticks(max, count = 4, { integer = false } = {}) {
  let step = niceCeil(Math.max(max, Number.EPSILON) / count);
  if (integer) {
    step = Math.max(1, Math.ceil(step));
    const needed = Math.max(1, Math.ceil(max / step));
    return Array.from({ length: Math.min(count, needed) + 1 }, (_, i) => i * step);
  }
  return Array.from({ length: count + 1 }, (_, i) => Math.round(i * step * 1000) / 1000);
}

// Stacked columns: one column per day, one segment per series (model).
// series: [{key, values: [per day]}]. Returns {columns, ticks, max, plot} in SVG units.
export function stackedColumns(labels, series, { width = 640, height = 240, pad = 32,
  integer = true } = {}) {
  const plot = { left: pad + 8, top: 12, right: width - 8, bottom: height - pad };
  const totals = labels.map((_, day) =>
    series.reduce((sum, item) => sum + (Number(item.values[day]) || 0), 0),
  );
  const tickValues = ticks(Math.max(1, ...totals), 4, { integer });
  const max = tickValues[tickValues.length - 1];
  const plotHeight = plot.bottom - plot.top;
  const slot = (plot.right - plot.left) / Math.max(1, labels.length);
  const barWidth = Math.max(2, Math.min(36, slot * 0.7));
  const columns = labels.map((label, day) => {
    let y = plot.bottom;
    const segments = [];
    series.forEach((item, index) => {
      const value = Number(item.values[day]) || 0;
      if (value <= 0) {
        return;
      }
      const h = (value / max) * plotHeight;
      y -= h;
      segments.push({ key: item.key, index, value, x: 0, y, h });
    });
    const x = plot.left + slot * day + (slot - barWidth) / 2;
    for (const segment of segments) {
      segment.x = x;
    }
    return { label, total: totals[day], x, width: barWidth, center: x + barWidth / 2, segments };
  });
  const tickMarks = tickValues.map((value) => ({
    value,
    y: plot.bottom - (value / max) * plotHeight,
  }));
  return { columns, ticks: tickMarks, max, plot };
}

// Horizontal bars with optional stacked segments: rows [{label, segments: [{key, value}]}].
// `max` fixes the scale (e.g. 1 for rates); otherwise the largest row total, made nice.
export function horizontalBars(rows, { width = 640, rowHeight = 28, labelWidth = 140, max } = {}) {
  const totals = rows.map((row) => row.segments.reduce((s, seg) => s + (Number(seg.value) || 0), 0));
  const scaleMax = max || niceCeil(Math.max(0, ...totals)) || 1;
  const plotLeft = labelWidth;
  const plotWidth = Math.max(10, width - labelWidth - 64);
  const bars = rows.map((row, index) => {
    let x = plotLeft;
    const y = index * rowHeight + 4;
    const segments = row.segments.map((segment, segIndex) => {
      const w = ((Number(segment.value) || 0) / scaleMax) * plotWidth;
      const shape = { key: segment.key, index: segIndex, value: segment.value, x, y, w, h: rowHeight - 10 };
      x += w;
      return shape;
    });
    return { label: row.label, total: totals[index], y, end: x, segments };
  });
  return { bars, height: rows.length * rowHeight + 8, max: scaleMax, plotLeft, plotWidth };
}

// Short day labels ("11-25") and which of them to print so they never overlap.
export function dayLabelStep(count, width, minGap = 44) {
  if (count <= 1) {
    return 1;
  }
  const slot = width / count;
  return Math.max(1, Math.ceil(minGap / slot));
}
