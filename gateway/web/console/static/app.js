// evedge console: the few things the server cannot do from where it is.
// - Live values: one EventSource per page (<body data-live="/live/...">), see gateway/web/console/live.py.
//   Elements name the point they show: data-p (text, raw value in data-v, quality in data-q), data-pv (raw value
//   only, for styles and filters), data-pt (its time, where the page asks for times), data-pm / data-pmax (a <meter>'s value and maximum), data-refresh (a part
//   read again from data-src when the point changes).
// - Curves: uPlot, from the JSON in <script type="application/json" data-curve-for="ID">, grown by the stream.
// - Durations since a time (data-since), the overview's filters, and the CSRF header of htmx requests.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]')?.content;
document.addEventListener("htmx:configRequest", (e) => { if (csrf) e.detail.headers["X-CSRF-Token"] = csrf; });

function apply(values) {
  for (const [point, [text, raw, quality, time]] of Object.entries(values)) {
    const key = CSS.escape(point);
    for (const el of document.querySelectorAll(`[data-p="${key}"]`)) {
      if (el.classList.contains("since")) { el.dataset.since = raw; tickSince(el); }
      else el.textContent = text;
      el.dataset.v = raw;
      el.dataset.q = quality;
    }
    for (const el of document.querySelectorAll(`[data-pv="${key}"]`)) { el.dataset.v = raw; el.dataset.q = quality; }
    if (time !== undefined) for (const el of document.querySelectorAll(`[data-pt="${key}"]`)) el.textContent = time;
    for (const el of document.querySelectorAll(`[data-refresh="${key}"]`)) {  // a part the server draws again
      if (el.dataset.v !== raw) htmx.ajax("GET", el.dataset.src, { target: el, swap: "innerHTML" });
      el.dataset.v = raw;
    }
    for (const el of document.querySelectorAll(`[data-pm="${key}"]`)) if (raw !== "") el.value = Number(raw);
    for (const el of document.querySelectorAll(`[data-pmax="${key}"]`)) if (raw !== "") el.max = Number(raw);
  }
  filterTiles();
}

function connect(url) {
  const indicator = document.getElementById("live");
  const source = new EventSource(url);
  source.onopen = () => { if (indicator) indicator.dataset.state = "on"; };
  source.onerror = () => { if (indicator) indicator.dataset.state = "off"; };
  source.addEventListener("v", (e) => apply(JSON.parse(e.data)));
  source.addEventListener("row", (e) => addRow(JSON.parse(e.data).html));
  source.addEventListener("curve", (e) => growCurves(JSON.parse(e.data)));
  source.addEventListener("expired", () => { source.close(); location.href = "/login?next=" + encodeURIComponent(location.pathname); });
}

// -- event rows ------------------------------------------------------------------------------------------
function addRow(html) {
  const body = document.querySelector("tbody[data-rows]");
  if (!body) return;
  body.insertAdjacentHTML("afterbegin", html);
  const keep = Number(body.dataset.rows) || 200;
  while (body.rows.length > keep) body.deleteRow(-1);
}

// -- durations -------------------------------------------------------------------------------------------
function duration(seconds) {
  if (seconds < 60) return `${Math.max(0, Math.floor(seconds))}\u00a0s`;
  const minutes = Math.floor(seconds / 60), hours = Math.floor(minutes / 60);
  return hours ? `${hours}\u00a0h\u00a0${String(minutes % 60).padStart(2, "0")}\u00a0min` : `${minutes}\u00a0min`;
}
function tickSince(el) {
  const since = Date.parse(el.dataset.since);
  el.textContent = Number.isNaN(since) ? "–" : duration((Date.now() - since) / 1000);
}
function tickAll() { document.querySelectorAll(".since").forEach(tickSince); }

// -- the overview's filters ------------------------------------------------------------------------------
function filterTiles() {
  const tiles = document.querySelectorAll(".tile");
  if (!tiles.length) return;
  const value = (name) => document.querySelector(`[data-filter="${name}"]`)?.value ?? "";
  const search = value("search").trim().toLowerCase(), status = value("status"), group = value("group");
  let shown = 0;
  for (const tile of tiles) {
    let ok = !search || tile.dataset.id.toLowerCase().includes(search);
    if (ok && group) ok = tile.dataset.groups.split(" ").includes(group);
    if (ok && status === "online") ok = tile.dataset.v === "true";
    else if (ok && status === "offline") ok = tile.dataset.v !== "true";
    else if (ok && status) ok = tile.querySelector(`.status[data-v="${CSS.escape(status)}"]`) !== null;
    tile.hidden = !ok;
    if (ok) shown += 1;
  }
  const count = document.querySelector("[data-shown]");
  if (count) count.textContent = count.dataset.shown.replace("{shown}", shown).replace("{total}", tiles.length);
}

// -- curves (uPlot) --------------------------------------------------------------------------------------
const COLOURS = ["#d93526", "#0172ad", "#2a7d36", "#8a6d00", "#7540bf", "#b34d8a", "#4a5a6a", "#c05a00"];
const curves = [];

function makeCurve(holder) {
  const spec = JSON.parse(document.querySelector(`[data-curve-for="${holder.id}"]`).textContent);
  const scale = Number(holder.dataset.scale || 1), unit = holder.dataset.unit || "";
  const data = spec.data.map((column, i) => (i === 0 ? column : column.map((v) => (v === null ? null : v * scale))));
  // A single sample (a page opened just after start) would make uPlot span a day: give it the minute before.
  if (data[0].length === 1) data.forEach((column, i) => column.unshift(i === 0 ? column[0] - 60 : null));
  const lang = document.documentElement.lang;
  const format = new Intl.NumberFormat(lang, { maximumFractionDigits: 2 });
  // Ticks with the decimals their spacing needs (0.05 kWh apart: two), in the page's language.
  const ticks = (u, splits, axis, space, increment) => {
    const digits = Math.min(3, Math.max(0, -Math.floor(Math.log10(increment || 1))));
    const tick = new Intl.NumberFormat(lang, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    return splits.map((v) => tick.format(v));
  };
  const options = {
    width: holder.clientWidth, height: Number(holder.dataset.height || 220),
    series: [{}, ...spec.labels.map((label, i) => ({
      label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: Boolean(spec.spans),
      value: (u, v) => (v == null ? "–" : `${format.format(v)} ${unit}`),
      ...(spec.steps && spec.steps[i] ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
    }))],
    axes: [{}, { values: ticks, label: unit, size: 60 }],
    scales: { x: { time: true } },
    legend: { live: true },
  };
  // Times in the site's zone, as the page writes them (uPlot's own are in English).
  const zone = document.documentElement.dataset.tz || undefined;
  const clock = (seconds) => new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined, timeZone: zone });
  const moment = new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "medium", timeZone: zone });
  options.series[0] = { label: spec.time, value: (u, v) => (v == null ? "–" : moment.format(new Date(v * 1000))) };
  options.axes[0] = { space: 90, values: (u, splits, axis, space, increment) => splits.map((v) => clock(increment < 60).format(new Date(v * 1000))) };
  const plot = new uPlot(options, data, holder);
  curves.push({ plot, holder, scale, window: Number(holder.dataset.window || 0) });
  holder.dataset.points = String(data[0].length);
}

function growCurves(sample) {
  for (const curve of curves) {
    if (curve.holder.dataset.live !== "true" || !sample.length) continue;
    // A curve may take some of the sample's columns only (data-columns: the meters page has one per meter).
    const columns = curve.holder.dataset.columns ? curve.holder.dataset.columns.split(",").map(Number) : null;
    const data = curve.plot.data.map((column) => Array.from(column));
    data.forEach((column, i) => {
      const value = i === 0 ? sample[0] : sample[columns ? columns[i - 1] : i];
      column.push(i === 0 || value == null ? value ?? null : value * curve.scale);
    });
    while (curve.window && data[0].length && data[0][0] < sample[0] - curve.window) data.forEach((c) => c.shift());
    curve.plot.setData(data);
    curve.holder.dataset.points = String(data[0].length);
  }
}

function resizeCurves() { for (const c of curves) c.plot.setSize({ width: c.holder.clientWidth, height: c.plot.height }); }

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-filter]").forEach((el) => el.addEventListener("input", filterTiles));
  filterTiles();
  tickAll();
  setInterval(tickAll, 15000);
  if (window.uPlot) document.querySelectorAll(".curve").forEach(makeCurve);
  window.addEventListener("resize", resizeCurves);
  if (document.body.dataset.live) connect(document.body.dataset.live);
});
