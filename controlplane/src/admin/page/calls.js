// The live view: the calls up now, the last 100 calls and an hour of
// charts, read from GET /api/calls every two seconds while the view is
// open (the gateway reads its relays' figures only while someone looks).
// Uses app.js's api() and $(); the charts are uPlot's (vendor/).
"use strict";

const live = { charts: {}, poorMos: 3.6, end: 0 };
// The charts' hour ends at the newest sample (the gateway's clock).
const HOUR = 3600;

async function watchCalls() {
  await loadCalls();
  page.poll = setInterval(loadCalls, 2000);
}

function cell(tr, label, text, cls) {
  const td = document.createElement("td");
  td.dataset.label = label;
  td.textContent = text;
  if (cls) td.className = cls;
  tr.append(td);
  return td;
}

function duration(s) {
  const m = Math.floor(s / 60);
  return m ? `${m} min ${s % 60} s` : `${s} s`;
}

function mosCell(tr, label, score) {
  if (!score) return cell(tr, label, "—");
  const poor = score.mos < live.poorMos;
  const td = cell(tr, label, `${score.mos.toFixed(2)}${poor ? " poor" : ""}`, poor ? "mos poor" : "mos fine");
  td.title = `R ${score.r}; lost ${score.loss_percent} %, late in the buffer ${score.late_percent} %, delay ${score.delay_ms} ms`;
  return td;
}

// One leg: what came in (measured here), what went out (the far end's
// reports), its round trip.
function legText(leg, address) {
  const parts = [];
  if (address) parts.push(address);
  if (!leg) { parts.push("no figures yet"); return parts.join(" · "); }
  const i = leg.inbound;
  parts.push(`in: ${i.loss_percent} % lost, jitter ${i.jitter_ms} ms (avg ${i.jitter_avg_ms})`);
  if (leg.outbound) parts.push(`out: ${leg.outbound.loss_percent} % lost, jitter ${leg.outbound.jitter_ms} ms (far end's report)`);
  if (leg.rtt_ms) parts.push(`RTT ${leg.rtt_ms.avg} ms`);
  const x = leg.xr;
  if (x) parts.push(`far end's XR: ${x.loss_percent} % lost, ${x.discard_percent} % discarded${x.mos_cq == null ? "" : `, MOS-CQ ${x.mos_cq}`}`);
  return parts.join(" · ");
}

function inText(leg) {
  if (!leg) return "—";
  return `${leg.inbound.loss_percent} % lost, jitter ${leg.inbound.jitter_avg_ms} ms avg`;
}

function legCell(tr, label, leg, address) {
  const bad = leg && (leg.inbound.loss_percent >= 1 || leg.inbound.jitter_avg_ms >= 20);
  return cell(tr, label, legText(leg, address), bad ? "leg poor" : "leg");
}

function showLive(calls, at) {
  const body = $("#live-calls tbody");
  body.replaceChildren();
  $("#calls-count").textContent = `(${calls.length})`;
  for (const c of calls) {
    const q = c.quality;
    const tr = document.createElement("tr");
    tr.dataset.call = c.call;
    cell(tr, "Call", `${c.from} → ${c.to} (${c.direction === "pbx-to-cloud" ? "from the PBX" : "from the cloud"})`);
    cell(tr, "Codec", c.codec || "—");
    cell(tr, "Duration", duration(c.duration_s));
    legCell(tr, "PBX leg", q && q.pbx_leg, c.pbx_media);
    legCell(tr, "Cloud leg", q && q.cloud_leg, c.cloud_media);
    mosCell(tr, "MOS to PBX", q && q.to_pbx);
    mosCell(tr, "MOS to cloud", q && q.to_cloud);
    body.append(tr);
  }
  if (!calls.length) {
    const tr = document.createElement("tr");
    cell(tr, "", "No call is up.");
    body.append(tr);
  }
  $("#calls-updated").textContent = at ? `Figures of ${new Date(at).toLocaleTimeString()}, read every second while this page is open.` : "";
}

function showRecent(recent) {
  const body = $("#recent-calls tbody");
  body.replaceChildren();
  for (const r of recent) {
    const q = r.quality;
    const tr = document.createElement("tr");
    const answered = r.answer ? (Date.parse(r.end) - Date.parse(r.answer)) / 1000 : 0;
    cell(tr, "Ended", new Date(r.end).toLocaleTimeString());
    cell(tr, "Call", `${r.from} → ${r.to}`);
    cell(tr, "Codec", r.codec || "—");
    cell(tr, "Duration", duration(Math.round(answered)));
    cell(tr, "PBX leg in", inText(q && q.pbx_leg));
    cell(tr, "Cloud leg in", inText(q && q.cloud_leg));
    mosCell(tr, "MOS to PBX", q && q.to_pbx);
    mosCell(tr, "MOS to cloud", q && q.to_cloud);
    cell(tr, "How it ended", r.cause);
    body.append(tr);
  }
}

function chartWidth(el) {
  return Math.max(200, el.clientWidth || 300);
}

// A line chart of one figure over the hour, made once and fed after.
function lineChart(id, label, color, data) {
  const el = $(id);
  let u = live.charts[id];
  if (!u) {
    u = live.charts[id] = new uPlot({
      width: chartWidth(el), height: 160, legend: { show: false },
      series: [{}, { label, stroke: color, width: 2, fill: color + "22" }],
      scales: {
        x: { time: true, range: () => [live.end - HOUR, live.end] },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [{}, { size: 50 }],
    }, data, el);
  } else {
    u.setData(data);
  }
  return u;
}

// Each band by its upper bound; the last, everything above.
const BAND_NAMES = (bands) => [...bands.map((b) => `<${b}`), `≥${bands[bands.length - 1]}`];

function mosChart(bands, counts) {
  const el = $("#chart-mos");
  const names = BAND_NAMES(bands);
  const data = [names.map((_, i) => i), counts];
  let u = live.charts.mos;
  if (!u) {
    u = live.charts.mos = new uPlot({
      width: chartWidth(el), height: 160, legend: { show: false },
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.2)] } },
      series: [{}, { label: "calls", fill: "#0b5cad99", stroke: "#0b5cad", paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } }],
      axes: [
        { splits: () => names.map((_, i) => i), values: (u, v) => v.map((i) => names[i] || ""), font: "11px system-ui, sans-serif" },
        { size: 40 },
      ],
    }, data, el);
  } else {
    u.setData(data);
  }
}

function showHistory(h) {
  const s = h.samples || [];
  const x = s.map((p) => p.at_ms / 1000);
  live.end = x.length ? x[x.length - 1] : Date.now() / 1000;
  lineChart("#chart-calls", "calls up", "#0b5cad", [x, s.map((p) => p.calls)]);
  lineChart("#chart-packets", "packets/s", "#1f7a3a", [x, s.map((p) => p.packets_per_s)]);
  const counts = (h.mos_bands || []).concat([0]).map((_, i) => s.reduce((n, p) => n + (p.mos[i] || 0), 0));
  mosChart(h.mos_bands || [], counts);
}

async function loadCalls() {
  if (page.view !== "calls") return;
  const r = await api("GET", "/api/calls");
  if (r.status !== 200) { $("#calls-updated").textContent = r.body.error || "the live view is not available"; return; }
  live.poorMos = r.body.poor_mos || live.poorMos;
  showLive(r.body.calls || [], r.body.calls_at_ms);
  showRecent(r.body.recent || []);
  if (typeof uPlot === "function") showHistory(r.body.history || {});
}

window.addEventListener("resize", () => {
  for (const [id, u] of Object.entries(live.charts)) {
    const el = id === "mos" ? $("#chart-mos") : $(id);
    u.setSize({ width: chartWidth(el), height: 160 });
  }
});
