// Small canvas charts: line charts of per-epoch values, and the decision-boundary heat map
// (TensorFlow Playground's picture: the model's output over the input plane, points on top).

export const CLASS_COLORS = ['#2f6fd0', '#e8833a', '#2f9e63', '#c2417e', '#7a52c7', '#c94141', '#1d9bab', '#8c6d1f'];

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Round numbers for axis ticks: about `count` of them covering [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

export function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

/** Sizes a canvas's backing store to its CSS box and the device pixel ratio. */
function fit(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth));
  const h = Math.max(1, Math.round(canvas.clientHeight));
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

/**
 * A line chart of records by epoch: `series` are {key, label, color, dashed}. The canvas's
 * `data-points` attribute counts the points drawn (tests read it).
 */
export class LineChart {
  constructor(canvas, { series, yLabel = '', logY = false }) {
    this.canvas = canvas;
    this.series = series;
    this.yLabel = yLabel;
    this.logY = logY;
    this.records = [];
    /** What an empty chart says (a job page sets it once the job ends without an epoch). */
    this.emptyText = 'waiting for the first epoch…';
    this.pending = false;
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(canvas);
  }

  set(records) {
    this.records = records;
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  destroy() {
    this.observer.disconnect();
  }

  draw() {
    const { ctx, w, h } = fit(this.canvas);
    const text = css('--muted') || '#667';
    const grid = css('--grid') || '#e5e7eb';
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    const pts = this.series.map((s) =>
      this.records
        .map((r) => [r.epoch, r[s.key]])
        .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!this.logY || y > 0)),
    );
    const count = pts.reduce((n, p) => n + p.length, 0);
    this.canvas.dataset.points = String(count);
    const all = pts.flat();
    if (!all.length) {
      ctx.fillStyle = text;
      ctx.textAlign = 'center';
      ctx.fillText(this.emptyText, w / 2, h / 2);
      return;
    }
    const tf = this.logY ? Math.log10 : (v) => v;
    let x0 = 1;
    let x1 = Math.max(2, ...all.map((p) => p[0]));
    let y0 = Math.min(...all.map((p) => tf(p[1])));
    let y1 = Math.max(...all.map((p) => tf(p[1])));
    if (y1 - y0 < 1e-12) {
      // A constant (the usual learning rate): centre it rather than squash it onto an edge.
      const v = y0;
      const d = Math.abs(v) * 0.5 || 0.5;
      y0 = v - d;
      y1 = v + d;
    }
    const pad = (y1 - y0) * 0.06;
    y0 -= pad; y1 += pad;
    if (!this.logY && y0 < 0 && Math.min(...all.map((p) => p[1])) >= 0) y0 = 0;
    const yt = this.logY
      ? ticks(Math.floor(y0), Math.ceil(y1), Math.min(5, Math.ceil(y1) - Math.floor(y0))).filter((v) => v >= y0 && v <= y1)
      : ticks(y0, y1, 4);
    const labels = yt.map((v) => fmt(this.logY ? 10 ** v : v, 3));
    // The left margin fits the widest tick label (7.00e+13 needs more room than 0.5).
    const widest = Math.max(0, ...labels.map((l) => ctx.measureText(l).width));
    const m = { l: Math.max(48, Math.ceil(widest) + 12), r: 20, t: 10, b: 24 };
    this.canvas.dataset.leftMargin = String(m.l);
    const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (w - m.l - m.r);
    const Y = (y) => h - m.b - ((y - y0) / (y1 - y0)) * (h - m.t - m.b);

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = text;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    yt.forEach((v, i) => {
      const y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(w - m.r, y); ctx.stroke();
      ctx.fillText(labels[i], m.l - 6, y);
    });
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const v of ticks(x0, x1, Math.max(2, Math.floor((w - 60) / 70))).filter((v) => Number.isInteger(v))) {
      const x = Math.round(X(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, h - m.b); ctx.lineTo(x, h - m.b + 4); ctx.stroke();
      ctx.fillText(String(v), x, h - m.b + 6);
    }
    ctx.beginPath(); ctx.moveTo(m.l, h - m.b + 0.5); ctx.lineTo(w - m.r, h - m.b + 0.5); ctx.stroke();

    this.series.forEach((s, i) => {
      const p = pts[i];
      if (!p.length) return;
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      p.forEach(([x, y], j) => (j ? ctx.lineTo(X(x), Y(tf(y))) : ctx.moveTo(X(x), Y(tf(y)))));
      ctx.stroke();
      ctx.setLineDash([]);
      if (p.length < 40) for (const [x, y] of p) { ctx.beginPath(); ctx.arc(X(x), Y(tf(y)), 2.5, 0, 7); ctx.fill(); }
    });
  }
}

function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));

/**
 * The decision boundary: `cells` is an n×n row-major array (row 0 at the top, y max) of
 * output rows over `domain` {x0, x1, y0, y1}; binary outputs are one probability, several
 * outputs are class probabilities. `points` are {x, y, cls}. Returns the pixels drawn.
 */
export function drawBoundary(canvas, { n, cells, domain, points, names }) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const white = [255, 255, 255];
  const colors = CLASS_COLORS.map(hexRgb);
  const img = new ImageData(n, n);
  cells.forEach((out, i) => {
    let c;
    if (out.length === 1) {
      // Playground's diverging map: class 0 blue, class 1 orange, white at p = 0.5.
      const p = Math.min(1, Math.max(0, out[0]));
      c = p < 0.5 ? mix(white, colors[0], (0.5 - p) * 2 * 0.6) : mix(white, colors[1], (p - 0.5) * 2 * 0.6);
    } else {
      let k = 0;
      out.forEach((v, j) => { if (v > out[k]) k = j; });
      const conf = out.length > 1 ? (out[k] - 1 / out.length) / (1 - 1 / out.length) : 1;
      c = mix(white, colors[k % colors.length], 0.15 + 0.45 * Math.max(0, conf));
    }
    img.data.set([...c, 255], i * 4);
  });
  const off = new OffscreenCanvas(n, n);
  off.getContext('2d').putImageData(img, 0, 0);
  const m = { l: yMargin(ctx, domain.y0, domain.y1, 2, 34), r: 8, t: 8, b: 26 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(off, m.l, m.t, pw, ph);
  const X = (x) => m.l + ((x - domain.x0) / (domain.x1 - domain.x0)) * pw;
  const Y = (y) => m.t + (1 - (y - domain.y0) / (domain.y1 - domain.y0)) * ph;
  for (const p of points) {
    ctx.beginPath();
    ctx.arc(X(p.x), Y(p.y), 4, 0, 7);
    ctx.fillStyle = CLASS_COLORS[p.cls % CLASS_COLORS.length] || '#888';
    ctx.fill();
    ctx.lineWidth = 1.4;
    ctx.strokeStyle = '#fff';
    ctx.stroke();
  }
  axes(ctx, m, w, h, domain, names);
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
}

/** Regression with one input: the points and the fitted curve `curve` [[x, y], …]. */
export function drawFit(canvas, { points, curve, domain, names }) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const m = { l: yMargin(ctx, domain.y0, domain.y1, 2, 40), r: 8, t: 8, b: 26 };
  canvas.dataset.leftMargin = String(m.l);
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const X = (x) => m.l + ((x - domain.x0) / (domain.x1 - domain.x0)) * pw;
  const Y = (y) => m.t + (1 - (y - domain.y0) / (domain.y1 - domain.y0)) * ph;
  ctx.fillStyle = css('--panel-2') || '#f6f7f9';
  ctx.fillRect(m.l, m.t, pw, ph);
  ctx.fillStyle = CLASS_COLORS[0];
  ctx.globalAlpha = 0.55;
  for (const p of points) { ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), 3, 0, 7); ctx.fill(); }
  ctx.globalAlpha = 1;
  ctx.strokeStyle = CLASS_COLORS[1];
  ctx.lineWidth = 2.5;
  ctx.beginPath();
  curve.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
  ctx.stroke();
  axes(ctx, m, w, h, domain, names);
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
}

/** A left margin that fits the widest y tick label `axes` will write (never under `min`). */
function yMargin(ctx, y0, y1, digits, min) {
  ctx.font = '11px system-ui, sans-serif';
  const widest = Math.max(0, ...ticks(y0, y1, 4).map((v) => ctx.measureText(fmt(v, digits)).width));
  return Math.max(min, Math.ceil(widest) + 10);
}

function axes(ctx, m, w, h, d, names) {
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = css('--muted') || '#667';
  ctx.strokeStyle = css('--grid') || '#ddd';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  for (const v of ticks(d.x0, d.x1, 4)) {
    const x = m.l + ((v - d.x0) / (d.x1 - d.x0)) * pw;
    ctx.fillText(fmt(v, 2), x, h - m.b + 5);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of ticks(d.y0, d.y1, 4)) {
    const y = m.t + (1 - (v - d.y0) / (d.y1 - d.y0)) * ph;
    ctx.fillText(fmt(v, 2), m.l - 5, y);
  }
  ctx.strokeRect(m.l + 0.5, m.t + 0.5, pw - 1, ph - 1);
  if (names) {
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    ctx.fillText(names[0] || 'x', w - m.r, h - 1);
    if (names[1]) {
      ctx.save();
      ctx.translate(10, m.t);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ctx.fillText(names[1], 0, 0);
      ctx.restore();
    }
  }
}

/** Axis-aligned bounds of values, padded by 8 %. */
export function bounds(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const p = (hi - lo) * 0.08;
  return [lo - p, hi + p];
}

/**
 * The learning-rate range test: the batch losses (faint) and the smoothed loss against the
 * learning rate on a log axis, with the rate the job chose (`marked`) as a vertical line.
 * The canvas's `data-points` counts the smoothed points and `data-marked-x` is the marker's
 * x in CSS pixels (tests read them).
 */
export function drawRangeTest(canvas, { points, marked }) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const pts = points.filter((p) => p.learning_rate > 0 && Number.isFinite(p.smoothed_loss));
  canvas.dataset.points = String(pts.length);
  if (!pts.length) return;
  const lx = pts.map((p) => Math.log10(p.learning_rate));
  const x0 = Math.min(...lx);
  const x1 = Math.max(x0 + 1e-9, ...lx);
  // The smoothed curve sets the scale; batch losses past 4× its minimum are clipped.
  const s = pts.map((p) => p.smoothed_loss);
  const lo = Math.min(...s);
  const [y0, y1] = bounds([lo, Math.min(Math.max(...s), Math.max(lo * 4, lo + 1e-6))]);
  const m = { l: yMargin(ctx, y0, y1, 3, 48), r: 12, t: 10, b: 26 };
  canvas.dataset.leftMargin = String(m.l);
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const X = (lr) => m.l + ((Math.log10(lr) - x0) / (x1 - x0)) * pw;
  const Y = (v) => m.t + (1 - (Math.min(y1, Math.max(y0, v)) - y0) / (y1 - y0)) * ph;
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = css('--muted') || '#667';
  ctx.strokeStyle = css('--grid') || '#ddd';
  ctx.lineWidth = 1;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let e = Math.ceil(x0); e <= Math.floor(x1); e++) {
    const x = Math.round(m.l + ((e - x0) / (x1 - x0)) * pw) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, h - m.b); ctx.stroke();
    ctx.fillText(`1e${e}`, x, h - m.b + 5);
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of ticks(y0, y1, 4)) ctx.fillText(fmt(v, 3), m.l - 5, Y(v));
  ctx.strokeRect(m.l + 0.5, m.t + 0.5, pw - 1, ph - 1);
  ctx.globalAlpha = 0.3;
  ctx.strokeStyle = CLASS_COLORS[0];
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(X(p.learning_rate), Y(p.loss)) : ctx.moveTo(X(p.learning_rate), Y(p.loss))));
  ctx.stroke();
  ctx.globalAlpha = 1;
  ctx.lineWidth = 2;
  ctx.beginPath();
  pts.forEach((p, i) => (i ? ctx.lineTo(X(p.learning_rate), Y(p.smoothed_loss)) : ctx.moveTo(X(p.learning_rate), Y(p.smoothed_loss))));
  ctx.stroke();
  if (marked > 0) {
    const x = X(marked);
    ctx.strokeStyle = CLASS_COLORS[1];
    ctx.setLineDash([5, 4]);
    ctx.beginPath(); ctx.moveTo(x, m.t); ctx.lineTo(x, h - m.b); ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = CLASS_COLORS[1];
    ctx.textAlign = x > w / 2 ? 'right' : 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(`${fmt(marked, 2)}`, x + (x > w / 2 ? -4 : 4), m.t + 2);
    canvas.dataset.markedX = String(Math.round(x));
  }
  ctx.textAlign = 'right';
  ctx.textBaseline = 'bottom';
  ctx.fillStyle = css('--muted') || '#667';
  ctx.fillText('learning rate', w - m.r, h - 1);
}

/**
 * A scatter and line plot: `series` are {points: [[x, y]], color, width (0: no line), dots,
 * dashed, alpha, label}. `logX` puts x on a log axis; `xLabels` (index → text) makes x
 * categorical. The canvas's `data-points` counts the points drawn and `data-series` the
 * series (tests read them).
 */
export function drawPlot(canvas, { series, logX = false, xLabels = null, xLabel = '', yLabel = '' }) {
  const { ctx, w, h } = fit(canvas);
  ctx.clearRect(0, 0, w, h);
  const tx = (x) => (logX ? Math.log10(x) : x);
  const ok = ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0);
  const data = series.map((s) => ({ ...s, points: s.points.filter(ok) }));
  const all = data.flatMap((s) => s.points);
  canvas.dataset.points = String(all.length);
  canvas.dataset.series = String(data.filter((s) => s.points.length).length);
  ctx.font = '11px system-ui, sans-serif';
  const muted = css('--muted') || '#667';
  if (!all.length) {
    ctx.fillStyle = muted;
    ctx.textAlign = 'center';
    ctx.fillText('nothing to draw yet', w / 2, h / 2);
    return;
  }
  let [x0, x1] = xLabels ? [-0.5, xLabels.length - 0.5] : bounds(all.map((p) => tx(p[0])));
  const [y0, y1] = bounds(all.map((p) => p[1]));
  const m = { l: yMargin(ctx, y0, y1, 3, 48), r: 12, t: 10, b: xLabel ? 34 : 24 };
  canvas.dataset.leftMargin = String(m.l);
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const X = (x) => m.l + ((tx(x) - x0) / (x1 - x0)) * pw;
  const Y = (v) => m.t + (1 - (v - y0) / (y1 - y0)) * ph;
  ctx.fillStyle = muted;
  ctx.strokeStyle = css('--grid') || '#ddd';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of ticks(y0, y1, 4)) {
    const y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(m.l, y); ctx.lineTo(w - m.r, y); ctx.stroke();
    ctx.fillText(fmt(v, 3), m.l - 5, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  if (xLabels) {
    const every = Math.max(1, Math.ceil(xLabels.length / Math.max(1, Math.floor(pw / 90))));
    xLabels.forEach((l, i) => {
      if (i % every) return;
      const text = String(l);
      ctx.fillText(text.length > 18 ? `${text.slice(0, 17)}…` : text, m.l + ((i - x0) / (x1 - x0)) * pw, h - m.b + 5);
    });
  } else {
    const xt = logX
      ? Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => Math.ceil(x0) + i)
      : ticks(x0, x1, Math.max(2, Math.floor(pw / 70)));
    for (const v of xt) {
      const x = m.l + ((v - x0) / (x1 - x0)) * pw;
      ctx.fillText(logX ? `1e${v}` : fmt(v, 3), x, h - m.b + 5);
    }
  }
  ctx.strokeRect(m.l + 0.5, m.t + 0.5, pw - 1, ph - 1);
  for (const s of data) {
    if (!s.points.length) continue;
    ctx.globalAlpha = s.alpha ?? 1;
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    if (s.width) {
      ctx.lineWidth = s.width;
      ctx.setLineDash(s.dashed ? [5, 4] : []);
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (s.dots) for (const [x, y] of s.points) { ctx.beginPath(); ctx.arc(X(x), Y(y), s.dots, 0, 7); ctx.fill(); }
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = muted;
  if (xLabel) {
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    ctx.fillText(xLabel, w - m.r, h - 1);
  }
  if (yLabel) {
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(yLabel, m.l + 4, m.t + 2);
  }
}
