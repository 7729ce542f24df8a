// The admin page: drives the gateway's REST API (the same one automation
// uses). Holds no state the gateway does not: everything shown is read
// back from the API after each change.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const page = { csrf: null, onboarding: null, view: "onboarding", poll: null };

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (page.csrf && method !== "GET") headers["X-CSRF-Token"] = page.csrf;
  let r;
  try {
    r = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, body: { error: "the gateway does not answer (restarting?)" } };
  }
  let data = null;
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (r.status === 401 && path !== "/api/auth/login") showAccess();
  return { status: r.status, body: data || {} };
}

function show(id) {
  for (const s of $$("main > section")) s.hidden = s.id !== id;
}

function banner(text) {
  const b = $("#banner");
  b.textContent = text || "";
  b.hidden = !text;
}

function formErrors(form, answer) {
  for (const e of $$(".field-error", form)) e.textContent = "";
  for (const i of $$("input, select", form)) i.removeAttribute("aria-invalid");
  const errors = (answer && answer.errors) || {};
  let placed = false;
  for (const [field, why] of Object.entries(errors)) {
    const base = field.split(".")[0];
    const slot = $(`.field-error[data-for="${field}"]`, form) || $(`.field-error[data-for="${base}"]`, form);
    const input = $(`[name="${base}"]`, form);
    if (input) input.setAttribute("aria-invalid", "true");
    if (slot) { slot.textContent = why; placed = true; }
  }
  const general = $(".form-error", form);
  if (general) {
    const unplaced = Object.entries(errors)
      .filter(([f]) => !$(`.field-error[data-for="${f.split(".")[0]}"]`, form))
      .map(([, why]) => why);
    general.textContent = answer && answer.error && (!placed || unplaced.length)
      ? [answer.error, ...unplaced].join(": ")
      : "";
  }
}

function values(form) {
  const v = {};
  for (const el of $$("input, select", form)) {
    if (!el.name) continue;
    if (el.type === "radio") { if (el.checked) v[el.name] = el.value; continue; }
    v[el.name] = el.value;
  }
  return v;
}

// ---- access: the first password, then logins ----

async function start() {
  const a = await api("GET", "/api/auth");
  if (a.status !== 200) { banner(a.body.error || "the gateway does not answer"); return; }
  if (!a.body.signed_in) return showAccess(a.body);
  page.csrf = a.body.csrf;
  $("#nav").hidden = false;
  await showView(page.view);
}

async function showAccess(state) {
  if (!state) state = (await api("GET", "/api/auth")).body;
  $("#nav").hidden = true;
  const first = !state.password_set;
  $("#access-title").textContent = first ? "Set the admin password" : "Log in";
  $("#access-help").textContent = first ? "The first login sets the password: " + state.rules + "." : "";
  $("#confirm-row").hidden = !first;
  $("#access-submit").textContent = first ? "Set password" : "Log in";
  $("#access-form").dataset.first = first ? "1" : "";
  show("view-access");
  $("#password").focus();
}

$("#access-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const password = $("#password").value;
  const first = form.dataset.first === "1";
  if (first && password !== $("#password-confirm").value) {
    $("#access-error").textContent = "the two passwords differ";
    return;
  }
  const r = await api("POST", first ? "/api/auth/setup" : "/api/auth/login", { password });
  if (r.status !== 200) { $("#access-error").textContent = r.body.error; return; }
  $("#access-error").textContent = "";
  form.reset();
  page.csrf = r.body.csrf;
  $("#nav").hidden = false;
  await showView("onboarding");
});

$("#logout").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout");
  page.csrf = null;
  showAccess();
});

for (const b of $$("#nav [data-view]")) {
  b.addEventListener("click", () => showView(b.dataset.view));
}

async function showView(view) {
  page.view = view;
  clearInterval(page.poll);
  if (view === "operations") { show("view-operations"); return loadOperations(); }
  if (view === "calls") { show("view-calls"); return watchCalls(); }
  show("view-onboarding");
  return loadOnboarding();
}

// ---- the wizard ----

const STEP_NAMES = { gateway: "Gateway", pbx: "PBX", connect: "Connect", deployment: "Deployment", advanced: "Advanced", overview: "Overview" };

async function loadOnboarding(step) {
  const r = await api("GET", "/api/onboarding");
  if (r.status !== 200) return;
  const o = page.onboarding = r.body;
  $("#status-word").textContent = o.status;
  const types = $("#pbx-type");
  if (types.options.length === 1) {
    for (const t of o.pbx_types) {
      const opt = document.createElement("option");
      opt.value = t.type; opt.textContent = t.label; opt.dataset.port = t.csta_port;
      types.append(opt);
    }
  }
  fillForms(o);
  const current = step || o.next || "overview";
  const list = $("#steps");
  list.replaceChildren();
  for (const s of [...o.steps, { step: "overview", done: o.complete }]) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = STEP_NAMES[s.step];
    b.className = (s.done ? "done " : "") + (s.step === current ? "current" : "");
    b.addEventListener("click", () => openStep(s.step));
    li.append(b);
    list.append(li);
  }
  openStep(current);
}

function fillForms(o) {
  const g = o.gateway, gf = $('form[data-step="gateway"]');
  if (g) {
    gf.site.value = g.site; gf.address.value = g.address;
    for (const r of $$('[name="lan_mode"]', gf)) r.checked = r.value === g.lan.mode;
    if (g.lan.mode === "static") {
      gf.ip.value = g.lan.ip; gf.gateway.value = g.lan.gateway;
      gf.mask.value = prefixToMask(g.lan.prefix); gf.dns.value = g.lan.dns.join(", ");
    }
  }
  toggleStatic();
  const p = o.pbx, pf = $('form[data-step="pbx"]');
  if (p) {
    pf.type.value = p.type; pf.name.value = p.name; pf.address.value = p.address;
    pf.csta_port.value = p.csta_port; pf.username.value = p.username || "";
  }
  toggleMivo400();
  if (o.sync_minutes !== null) $('form[data-step="connect"]').sync_minutes.value = o.sync_minutes;
  const a = o.advanced, af = $('form[data-step="advanced"]');
  if (a) { af.inbound_digits.value = a.inbound_digits; af.outbound_digits.value = a.outbound_digits; af.update_time.value = a.update_time; }
}

function prefixToMask(p) {
  const m = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 255).join(".");
}

function toggleStatic() {
  const f = $('form[data-step="gateway"]');
  $(".static-only", f).hidden = values(f).lan_mode !== "static";
}
function toggleMivo400() {
  $(".mivo400-only").hidden = $("#pbx-type").value !== "mivoice-office-400";
}
for (const r of $$('[name="lan_mode"]')) r.addEventListener("change", toggleStatic);
$("#pbx-type").addEventListener("change", () => {
  const opt = $("#pbx-type").selectedOptions[0];
  if (opt && opt.dataset.port) $("#csta-port").value = opt.dataset.port;
  toggleMivo400();
});

function openStep(step) {
  clearInterval(page.poll);
  for (const el of $$("#view-onboarding .step")) el.hidden = el.dataset.step !== step;
  for (const b of $$("#steps button")) b.classList.toggle("current", b.textContent === STEP_NAMES[step]);
  if (step === "connect") { refreshConnect(); page.poll = setInterval(refreshConnect, 1000); }
  if (step === "deployment") refreshDeployment();
  if (step === "overview") showOverview();
}

// A saved setting the gateway runs with makes it restart: wait for it.
async function waitRestart(then) {
  banner("The gateway is starting again with the new settings…");
  await new Promise((ok) => setTimeout(ok, 1500));
  for (let i = 0; i < 120; i++) {
    const a = await api("GET", "/api/auth");
    if (a.status === 200) break;
    await new Promise((ok) => setTimeout(ok, 500));
  }
  banner("");
  await loadOnboarding(then);
}

const NEXT = { gateway: "pbx", pbx: "connect", connect: "deployment", deployment: "advanced", advanced: "overview" };

function bodyOf(step, v) {
  if (step === "gateway") return { ...v, lan_mode: v.lan_mode || "", dns: (v.dns || "").split(/[\s,]+/).filter(Boolean) };
  return v;
}

for (const form of $$("form.step")) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const step = form.dataset.step;
    let r;
    if (step === "deployment") r = await api("POST", "/api/onboarding/deployment", { done: true });
    else r = await api("PUT", `/api/onboarding/${step}`, bodyOf(step, values(form)));
    formErrors(form, r.status === 200 ? null : r.body);
    if (r.status !== 200) return;
    if (r.body.restarting) return waitRestart(NEXT[step]);
    await loadOnboarding(NEXT[step]);
  });
}

async function refreshConnect() {
  const r = await api("GET", "/api/onboarding/connect");
  if (r.status !== 200) return;
  const link = r.body.link || {};
  $("#csta-word").textContent = link.status || "Not connected";
  $("#csta-result").textContent = link.result || "";
  const down = (link.servers || []).map((s) => s.reason).filter(Boolean);
  $("#csta-why").textContent = link.result ? "" : (link.why || down.join("; "));
  $("#user-count").textContent = r.body.users ? r.body.users.total : 0;
}

async function refreshDeployment() {
  const r = await api("GET", "/api/onboarding/deployment");
  const body = $("#deployment-users");
  body.replaceChildren();
  const form = $('form[data-step="deployment"]');
  if (r.status !== 200) { formErrors(form, r.body); return; }
  for (const u of r.body.users) {
    const tr = document.createElement("tr");
    const box = document.createElement("input");
    box.type = "checkbox"; box.value = u.extension; box.disabled = !u.eligible;
    box.checked = u.eligible && !u.welcome_sent;
    const state = u.duplicate ? "duplicate email" : u.reason ? u.reason : u.welcome_sent ? "welcome sent" : "eligible";
    const cells = [box, u.extension, u.name, u.email, state].map((c) => {
      const td = document.createElement("td");
      if (typeof c === "string") td.textContent = c; else td.append(c);
      return td;
    });
    if (u.duplicate) tr.className = "duplicate";
    tr.append(...cells);
    body.append(tr);
  }
}

$("#send-welcome").addEventListener("click", async () => {
  const form = $('form[data-step="deployment"]');
  const welcome = $$("#deployment-users input:checked").map((b) => b.value);
  const r = await api("POST", "/api/onboarding/deployment", { welcome });
  formErrors(form, r.status === 200 ? null : r.body);
  if (r.status === 200) {
    $("#deployment-result").textContent = `Welcome messages sent to ${r.body.sent} user(s)`;
    refreshDeployment();
  }
});

function showOverview() {
  const o = page.onboarding, dl = $("#overview");
  dl.replaceChildren();
  const rows = [
    ["Site", o.gateway ? `${o.gateway.site}, ${o.gateway.address}` : "—"],
    ["LAN", o.gateway ? (o.gateway.lan.mode === "dhcp" ? "DHCP" : `${o.gateway.lan.ip}/${o.gateway.lan.prefix} via ${o.gateway.lan.gateway}`) : "—"],
    ["PBX", o.pbx ? `${o.pbx.name} (${o.pbx.type}) at ${o.pbx.address}, CSTA ${o.pbx.csta_port}` : "—"],
    ["User sync", o.sync_minutes === null ? "—" : `every ${o.sync_minutes} min`],
    ["Welcome messages", `${o.welcome_sent.length} sent`],
    ["Digits", o.advanced ? `inbound "${o.advanced.inbound_digits}", outbound "${o.advanced.outbound_digits}", updates at ${o.advanced.update_time}` : "—"],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = v;
    dl.append(dt, dd);
  }
  $("#onboarding-done").hidden = !o.complete;
  $("#finish").hidden = o.complete;
}

$("#finish").addEventListener("click", async () => {
  const r = await api("POST", "/api/onboarding/complete");
  const slot = $('[data-step="overview"] .form-error');
  slot.textContent = r.status === 200 ? "" : r.body.error;
  if (r.status === 200) await loadOnboarding("overview");
});

// ---- operations ----

async function loadOperations() {
  const s = await api("GET", "/api/status");
  if (s.status === 200) {
    $("#status-word").textContent = s.body.status;
    const dl = $("#status-list");
    dl.replaceChildren();
    const rows = [
      ["Status", s.body.status], ["Onboarding", s.body.onboarding],
      ["PBX trunk", s.body.pbx_trunk], ["Cloud trunk", s.body.cloud_trunk.state],
      ["CSTA", s.body.csta], ["Tunnel", s.body.tunnel || "off"],
      ["Calls in progress", String(s.body.calls_in_progress)], ["Profile", s.body.profile || "—"],
      ["Up for", `${s.body.uptime_seconds} s`],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = v;
      dl.append(dt, dd);
    }
  }
  pollTrace();
  loadDiagnostics();
  loadSupport();
  const t = await api("GET", "/api/tunnel");
  $("#gateway-id").textContent = (t.status === 200 && t.body.gateway) || "not linked to the platform";
  const v = await api("GET", "/api/versions");
  const dl = $("#versions");
  dl.replaceChildren();
  for (const [k, val] of Object.entries(v.body || {})) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k.replace(/_/g, " "); dd.textContent = String(val);
    dl.append(dt, dd);
  }
}

// Support's SSH window: open, its time left, closed early.
function timeLeft(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

async function loadSupport() {
  const r = await api("GET", "/api/operations/support-ssh");
  const slot = $("#support-state");
  if (r.status !== 200) { slot.textContent = ""; return; }
  const b = r.body;
  $("#support-close").hidden = !b.enabled;
  slot.textContent = b.enabled
    ? `Open on ${b.listen} for ${b.user}: ${timeLeft(b.seconds_left)} left (until ${b.until})`
    : `Closed${b.listen ? "" : " (it needs the gateway's LAN address)"}`;
}

$("#support-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const { key } = values(form);
  const r = await api("POST", "/api/operations/support-ssh", { key });
  formErrors(form, r.status === 200 ? null : r.body);
  if (r.status === 200) form.reset();
  loadSupport();
});

$("#support-close").addEventListener("click", async () => {
  await api("DELETE", "/api/operations/support-ssh");
  loadSupport();
});

async function loadDiagnostics() {
  const a = await api("GET", "/api/alarms");
  const list = $("#alarms");
  list.replaceChildren();
  for (const al of (a.body && a.body.alarms) || []) {
    const li = document.createElement("li");
    li.className = "alarm";
    li.textContent = `${al.source}: ${al.text} (since ${al.since})`;
    list.append(li);
  }
  if (!list.children.length) list.textContent = "None";
  const d = await api("GET", "/api/diagnostics");
  if (d.status !== 200) return;
  const r = d.body;
  $("#diagnostics-state").textContent = r.state === "done"
    ? `Last run ${r.at}: ${r.failed ? `${r.failed} check(s) failed` : "all passed"}`
    : (r.why || "Running…");
  const body = $("#diagnostics tbody");
  body.replaceChildren();
  for (const c of r.checks) {
    const tr = document.createElement("tr");
    tr.className = c.result;
    for (const text of [c.check, c.target, c.result, c.detail]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
  if (r.state === "running") setTimeout(loadDiagnostics, 1000);
}

$("#diagnostics-run").addEventListener("click", async () => {
  const r = await api("POST", "/api/diagnostics");
  if (r.status !== 202) { $("#diagnostics-state").textContent = r.body.error; return; }
  $("#diagnostics-state").textContent = "Running…";
  setTimeout(loadDiagnostics, 1500);
});

$("#collect-logs").addEventListener("click", async () => {
  const slot = $("#logs-link");
  slot.textContent = "Collecting…";
  const r = await api("POST", "/api/operations/logs");
  if (r.status !== 200) { slot.textContent = r.body.error; return; }
  const a = document.createElement("a");
  a.href = r.body.url; a.id = "logs-download"; a.textContent = "Download the logs";
  a.setAttribute("download", "");
  slot.replaceChildren(a, ` (${r.body.bytes} bytes; the link expires in ${Math.round(r.body.expires_in_s / 60) || 1} min)`);
});

function showTrace(t) {
  const slot = $("#trace-state");
  if (t.state === "running") { slot.textContent = `Tracing… ${t.ends_in_s} s left`; return; }
  if (t.state === "failed") { slot.textContent = `The trace failed: ${t.error}`; return; }
  if (t.state !== "done") { slot.textContent = ""; return; }
  const a = document.createElement("a");
  a.href = t.url; a.id = "trace-download"; a.textContent = "Download the trace";
  a.setAttribute("download", "");
  slot.replaceChildren(a, ` (${t.sip_packets} SIP and ${t.media_packets} media packets, ${t.bytes} bytes)`);
}

async function pollTrace() {
  const r = await api("GET", "/api/operations/trace");
  if (r.status !== 200) return;
  showTrace(r.body);
  if (r.body.state === "running") setTimeout(pollTrace, 1000);
}

$("#trace-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const r = await api("POST", "/api/operations/trace", { seconds: $("#trace-seconds").value });
  formErrors(form, r.status === 200 ? null : r.body);
  if (r.status === 200) { showTrace(r.body); setTimeout(pollTrace, 1000); }
});

$("#relink-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const { replaces, network, confirm } = values(form);
  // Two confirmations, then the typed word (SPEC §7).
  if (!$("#relink-sure").checked) {
    formErrors(form, { error: "tick the box: this gateway replaces that one" });
    return;
  }
  if (!window.confirm(`Replace ${replaces} with this gateway? Its settings are taken and this gateway starts again.`)) return;
  const r = await api("POST", "/api/operations/relink", { replaces, network, confirm });
  formErrors(form, r.status === 202 ? null : r.body);
  if (r.status !== 202) return;
  pollRelink();
});

async function pollRelink() {
  const r = await api("GET", "/api/operations/relink");
  if (r.status !== 200) { banner("The gateway is starting again with the replaced gateway's settings…"); return; }
  const slot = $("#relink-state");
  if (r.body.state === "waiting") { slot.textContent = `Waiting for the platform (${r.body.replaces})…`; setTimeout(pollRelink, 1000); return; }
  slot.textContent = r.body.state === "failed" ? `The relink failed: ${r.body.error}` : "";
}

$("#danger-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target;
  const { action, confirm } = values(form);
  const r = action === "reboot"
    ? await api("POST", "/api/operations/reboot", { confirm })
    : await api("POST", "/api/operations/reset", { kind: action, confirm });
  formErrors(form, r.status === 200 ? null : r.body);
  if (r.status !== 200) return;
  form.reset();
  banner("The gateway is starting again…");
  await new Promise((ok) => setTimeout(ok, 1500));
  for (let i = 0; i < 120; i++) {
    if ((await api("GET", "/api/auth")).status === 200) break;
    await new Promise((ok) => setTimeout(ok, 500));
  }
  banner("");
  start();
});

start();
