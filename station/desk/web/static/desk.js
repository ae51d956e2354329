// The national desk's page: a snapshot then changed rows over server-sent events; the wall
// re-renders at most every RENDER_MS; ages are computed here from the server's clock.
"use strict";

const RENDER_MS = 60;
const LIMIT = 200;                 // rows drawn (trouble first); the rest on "show all"
const BEEP_EVERY_MS = 2000;
const rows = new Map();            // station → row (as /api/stations)
let offset = 0;                    // server wall clock − ours, seconds
let session = { commands: false, user: null, csrf: null };
let soundOn = false, audio = null, beepTimer = null;
let renderTimer = null, lastRender = 0, selected = null, detailTimer = null;
let connected = false, showAll = false;

const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000 + offset;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ts = (iso) => (iso ? Date.parse(iso) / 1000 : null);

function age(seconds) {
  if (seconds == null) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} days`;
}
function since(t) {
  // an age that moves on by itself: refreshed every second without redrawing the row
  return t == null ? "–" : `<span class="age" data-t="${t}">${esc(age(now() - t))}</span>`;
}
function tickAges() {
  for (const el of document.querySelectorAll(".age")) {
    el.textContent = age(now() - Number(el.dataset.t));
  }
}
function dur(ms) {
  // a latency: milliseconds to minutes
  if (ms == null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return age(ms / 1000);
}
function clock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const same = new Date().toDateString() === d.toDateString();
  const t = d.toLocaleTimeString([], { hour12: false });
  return same ? t : `${d.toLocaleDateString()} ${t}`;
}
function oldest(r) {
  return r._alarm ? now() - r._alarm : null;
}
function take(r) {
  // parsed once per row received, not at every comparison of a sort
  r._alarm = ts(r.alarm_since);
  const old = rows.get(r.station);
  rows.set(r.station, r);
  changed(old, r);
}
const LABEL = { offline_alarms: "offline with alarms", unacked_long: "alarm unacked long",
  alarm: "alarm", stale: "stale", fault: "faults", offline: "offline", ok: "ok" };
const KINDS = Object.keys(LABEL);

// --- the wall ---------------------------------------------------------------------------------

function headline(r) {
  // The sentence a desk reads first about a station in trouble (HTML: its parts escaped).
  const n = r.alarms_active;
  const alarms = n ? `${n} alarm${n > 1 ? "s" : ""} unacknowledged${r.state === "offline" ?
    " at its last status" : ""}, the oldest for ${since(r._alarm)}` : "";
  if (r.state === "offline") {
    return `offline since ${esc(clock(r.since))} (${esc(r.reason || "?")})${alarms ? ", " + alarms : ""}`;
  }
  if (r.state === "stale") return `stale: no status since ${esc(clock(r.last_status_at))}${alarms ? ", " + alarms : ""}`;
  return alarms || "online";
}

function stateCell(r) {
  const from = r.state === "online" ? "" :
    `<div class="sub">since ${esc(clock(r.since))} · ${since(ts(r.since))}</div>`;
  const reason = r.reason ? ` (${esc(r.reason)})` : "";
  return `<span class="st-${esc(r.state)}">${esc(r.state)}${reason}</span>${from}`;
}

function alarmCell(r) {
  if (!r.alarms_active) return "0";
  const at = r.state === "offline" ? " at last status" : "";
  return `<b>${r.alarms_active}</b><div class="sub">oldest ${since(r._alarm)}${at}</div>`;
}

function disk(mb) {
  return mb >= 10000 ? `${(mb / 1000).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

function hostText(h) {
  const parts = [];
  if (h.cpu_temp_c != null) parts.push(`${h.cpu_temp_c} °C`);
  if (h.load1 != null) parts.push(`load ${h.load1}`);
  if (h.disk_free_mb != null) parts.push(`${disk(h.disk_free_mb)} free`);
  if (h.clock_synced != null) parts.push(h.clock_synced ? "clock synced" : "clock UNSYNCED");
  if (h.throttled) parts.push(`throttled ${h.throttled}`);
  return parts.join(" · ") || "?";
}

function hostCell(r) {
  const h = r.host || {}, parts = [];
  if (h.cpu_temp_c != null) parts.push(`${h.cpu_temp_c} °C`);
  if (h.throttled && h.throttled !== "0x0") parts.push(`throttled ${h.throttled}`);
  if (h.disk_free_mb != null) parts.push(`${disk(h.disk_free_mb)} free`);
  if (h.clock_synced === false) parts.push("clock unsynced");
  return esc(parts.join(" · ") || "–");
}

function rowHtml(r) {
  const cls = `${r.trouble}${r.attention ? " attention" : ""}`;
  const last = r.last_status_at ? `${esc(clock(r.last_status_at))}<div class="sub">${since(ts(r.last_status_at))} ago</div>` : "–";
  return `<tr class="${esc(cls)}" data-station="${esc(r.station)}">` +
    `<td class="station">${esc(r.station)}</td><td>${esc(r.region || "?")}</td>` +
    `<td>${stateCell(r)}</td><td class="num">${alarmCell(r)}</td>` +
    `<td>${esc((r.faults || []).join(", "))}</td><td class="version">${esc(r.version || "–")}</td>` +
    `<td>${hostCell(r)}</td><td class="when">${last}</td></tr>`;
}

function sortKey(a, b) {
  // oldest alarm first = earliest alarm_since first
  return (a.rank - b.rank) || ((a._alarm || Infinity) - (b._alarm || Infinity)) ||
    (a.station < b.station ? -1 : a.station > b.station ? 1 : 0);
}

function visible() {
  const out = [];
  for (const r of rows.values()) if (matches(r)) out.push(r);
  return out.sort(sortKey);
}

// What the last full render drew: the stations in order, and the last one (the window's edge).
let drawn = new Set(), edge = null, full = true;
const patches = new Map();         // station → row to redraw in place

function matches(r) {
  const region = $("region").value, q = $("search").value.trim().toLowerCase();
  return (!region || r.region === region) &&
    (!q || r.station.includes(q) || (r.region || "").includes(q));
}

function changed(old, r) {
  // A changed row is redrawn in place when it keeps its place; otherwise the wall is redrawn.
  if (full) return;
  const was = drawn.has(r.station), is = matches(r);
  if (was && is && old && old.rank === r.rank && old._alarm === r._alarm) patches.set(r.station, r);
  else if (was || (is && (edge === null || sortKey(r, edge) < 0))) full = true;
  else if (old && old.trouble !== r.trouble) full = true;      // the "… more" line counts
}

function render() {
  renderTimer = null;
  lastRender = performance.now();
  if (!full) { patch(); return; }
  patches.clear();
  const list = visible();
  const shown = showAll ? list : list.slice(0, LIMIT);
  drawn = new Set(shown.map((r) => r.station));
  edge = shown.length < list.length ? shown[shown.length - 1] : null;
  let html = shown.map(rowHtml).join("");
  if (shown.length < list.length) {
    const rest = list.slice(shown.length), counts = {};
    for (const r of rest) counts[r.trouble] = (counts[r.trouble] || 0) + 1;
    const what = KINDS.filter((k) => counts[k]).map((k) => `${counts[k]} ${LABEL[k]}`).join(", ");
    html += `<tr class="more"><td colspan="8">… ${rest.length} more stations (${esc(what)}): ` +
      `search or pick a region, or <button type="button" id="show-all">show all</button></td></tr>`;
  }
  $("rows").innerHTML = html;
  full = false;                    // only once drawn: a failed draw is tried again
  $("empty").hidden = rows.size > 0;
  renderSummary();
  renderAttention();
  renderRegions();
  done();
}

function patch() {
  // Rows that kept their place: redrawn one by one, the rest of the wall untouched.
  const body = $("rows");
  for (const [station, r] of patches) {
    const tr = body.querySelector(`tr[data-station="${CSS.escape(station)}"]`);
    if (tr) tr.outerHTML = rowHtml(r);
  }
  patches.clear();
  renderSummary();
  renderAttention();
  done();
}

function done() {
  $("clock").textContent = new Date(now() * 1000).toLocaleString([], { hour12: false });
  document.body.dataset.ready = "1";
  window.deskRenders = (window.deskRenders || 0) + 1;
  (window.deskRenderMs = window.deskRenderMs || []).push(performance.now() - lastRender);
  if (window.deskRenderMs.length > 500) window.deskRenderMs.shift();
}

function redraw() { full = true; schedule(); }

function schedule() {
  if (renderTimer) return;
  const wait = Math.max(0, RENDER_MS - (performance.now() - lastRender));
  renderTimer = setTimeout(render, wait);
}

function renderSummary() {
  const counts = Object.fromEntries(KINDS.map((k) => [k, 0]));
  for (const r of rows.values()) counts[r.trouble] = (counts[r.trouble] || 0) + 1;
  $("summary").innerHTML = `<span class="count">${rows.size} stations</span>` +
    KINDS.filter((k) => counts[k]).map((k) =>
      `<span class="count c-${k}">${counts[k]} ${esc(LABEL[k])}</span>`).join("");
}

let knownRegions = "";
function renderRegions() {
  const regions = [...new Set([...rows.values()].map((r) => r.region).filter(Boolean))].sort();
  const key = regions.join("\n");
  if (key === knownRegions) return;
  knownRegions = key;
  const current = $("region").value;
  $("region").innerHTML = `<option value="">all regions</option>` +
    regions.map((g) => `<option${g === current ? " selected" : ""}>${esc(g)}</option>`).join("");
}

// --- attention: red page, sound, "seen" -------------------------------------------------------

let attentionKey = "";
function renderAttention() {
  const calling = [...rows.values()].filter((r) => r.attention).sort(sortKey);
  document.body.classList.toggle("alert", calling.length > 0);
  $("attention").hidden = calling.length === 0;
  $("attention-text").textContent = calling.length ?
    `ATTENTION: ${calling.length} station${calling.length > 1 ? "s" : ""} need${calling.length > 1 ? "" : "s"} you` : "";
  const html = calling.map((r) =>
    `<div class="att"><span>${esc(r.station)} — ${headline(r)}</span>` +
    `<button type="button" data-seen="${esc(r.station)}">Mark seen</button></div>`).join("");
  // redrawn only when what it says changed (not for ages: a click on "Mark seen" must land)
  const key = html.replace(/<span class="age"[^>]*>[^<]*<\/span>/g, "");
  if (key !== attentionKey) { attentionKey = key; $("attention-list").innerHTML = html; }
  if (calling.length && soundOn && !beepTimer) { beep(); beepTimer = setInterval(beep, BEEP_EVERY_MS); }
  if (!calling.length && beepTimer) { clearInterval(beepTimer); beepTimer = null; }
  window.deskAttention = calling.map((r) => r.station);
}

function beep() {
  if (!audio) return;
  const t = audio.currentTime;
  for (const [i, f] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = f; o.type = "square";
    g.gain.setValueAtTime(0.25, t + i); g.gain.exponentialRampToValueAtTime(0.001, t + i + 0.22);
    o.connect(g).connect(audio.destination); o.start(t + i); o.stop(t + i + 0.23);
  }
  window.deskBeeps = (window.deskBeeps || 0) + 1;
}

function enableSound() {
  // Browsers play sound only after a user gesture: this click is it.
  soundOn = !soundOn;
  if (soundOn && !audio) audio = new (window.AudioContext || window.webkitAudioContext)();
  if (soundOn && audio.state === "suspended") audio.resume();
  $("sound").textContent = soundOn ? "Sound on" : "Enable sound";
  if (!soundOn && beepTimer) { clearInterval(beepTimer); beepTimer = null; }
  renderAttention();
}

async function post(path, body) {
  const res = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf || "" },
    body: JSON.stringify(body) });
  let doc = {};
  try { doc = await res.json(); } catch (e) { doc = {}; }
  return { ok: res.ok, status: res.status, doc };
}

async function markSeen(station) {
  if (session.login_required && !session.user) { openLogin(); return; }
  const res = await post("/api/seen", { station });
  if (!res.ok) alert(`Not marked: ${res.doc.error || res.status}`);
}

// --- detail view ------------------------------------------------------------------------------

function evText(e) {
  const f = [];
  if (e.complaint_id) f.push(`complaint ${e.complaint_id}`);
  if (e.priority) f.push(e.priority);
  if (e.relay_latency_ms != null) f.push(`relay ${e.relay_latency_ms} ms`);
  if (e.ack_latency_ms != null) f.push(`ack after ${dur(e.ack_latency_ms)}`);
  if (e.method) f.push(e.method + (e.by ? ` by ${e.by}` : ""));
  if (e.reason) f.push(e.reason);
  if (e.fault) f.push(e.fault);
  if (e.detail) f.push(e.detail);
  if (e.cmd) f.push(`${e.cmd} ${e.ok ? "ok" : "refused"}`);
  if (e.unacked_s != null) f.push(`unacked ${age(e.unacked_s)}`);
  if (e.result) f.push(String(e.result));
  return f.join(" · ");
}

function detailHtml(d) {
  const r = d.station, h = r.host || {}, c = r.counters || {}, o = r.outputs || {};
  r._alarm = ts(r.alarm_since);
  const canCmd = session.commands;
  const cmds = canCmd ? (session.user ?
    `<div class="actions">${["ack", "silence", "test", "status"].map((k) =>
      `<button type="button" class="${k === "ack" || k === "silence" ? "danger" : ""}" data-cmd="${k}">${k}</button>`).join("")}
      <span class="note">as ${esc(session.user)}</span></div>` :
    `<div class="actions"><button type="button" data-login="1">Log in to send commands</button></div>`) : "";
  const events = d.events.map((e) =>
    `<tr><td class="when">${esc(clock(e.at ? new Date(e.at * 1000).toISOString() : null))}</td>` +
    `<td class="ev-${esc(e.type)}">${esc(e.type)}</td><td>${esc(evText(e))}</td></tr>`).join("");
  const sent = (d.commands || []).map((k) =>
    `<tr><td class="when">${esc(clock(new Date(k.at * 1000).toISOString()))}</td><td>${esc(k.user)}</td>` +
    `<td>${esc(k.cmd)}</td><td>${k.ok == null ? (k.published ? "sent" : "NOT sent") : (k.ok ? "ok" : "refused")} ${esc(k.detail || "")}</td></tr>`).join("");
  return `<button type="button" id="detail-close">Close ✕</button>
    <h2>${esc(r.station)} <span class="sub">${esc(r.region || "")}</span></h2>
    <div class="headline c-${esc(r.trouble)}">${headline(r)}</div>
    ${r.attention ? `<div class="actions"><button type="button" data-seen="${esc(r.station)}">Mark seen</button></div>` : ""}
    ${cmds}
    <dl>
      <dt>state</dt><dd>${esc(r.state)}${r.reason ? ` (${esc(r.reason)})` : ""} since ${esc(clock(r.since))}</dd>
      <dt>last status</dt><dd>${esc(clock(r.last_status_at))} (${esc(age(now() - ts(r.last_status_at)))} ago, every ${esc(r.interval_s ?? "?")} s)</dd>
      <dt>alarms</dt><dd>${r.alarms_active}${r.alarms_active ? `, oldest for ${esc(age(oldest(r)))}` : ""}</dd>
      <dt>siren · beacon</dt><dd>${o.siren == null ? "?" : (o.siren ? "ON" : "off")} · ${o.beacon == null ? "?" : (o.beacon ? "ON" : "off")}</dd>
      <dt>button</dt><dd>${esc(r.button || "?")}</dd>
      <dt>faults</dt><dd>${esc((r.faults || []).join(", ") || "none")}</dd>
      <dt>outbox</dt><dd>${esc(r.outbox_pending)}</dd>
      <dt>version</dt><dd>${esc(r.version || "?")}</dd>
      <dt>host</dt><dd>${esc(hostText(h))}</dd>
      <dt>since start</dt><dd>${c.complaints ?? "?"} complaints · ${c.acks ?? "?"} acks · ${c.rejected ?? "?"} rejected · ${c.reconnects ?? "?"} reconnects</dd>
      <dt>last ack</dt><dd>${r.last_ack_latency_ms == null ? "–" : esc(dur(r.last_ack_latency_ms)) + " after alerting"}</dd>
      ${r.seen_at ? `<dt>seen at desk</dt><dd>${esc(clock(r.seen_at))}${r.seen_by ? " by " + esc(r.seen_by) : ""}</dd>` : ""}
    </dl>
    <h3>Recent events</h3>
    <table class="events"><tbody>${events || "<tr><td>none received</td></tr>"}</tbody></table>
    ${canCmd ? `<h3>Commands sent from this desk</h3><table><tbody>${sent || "<tr><td>none</td></tr>"}</tbody></table>` : ""}
    <p id="cmd-result" class="note"></p>`;
}

async function openDetail(station) {
  selected = station;
  if (location.hash !== `#station=${encodeURIComponent(station)}`) {
    history.replaceState(null, "", `#station=${encodeURIComponent(station)}`);
  }
  const res = await fetch(`/api/stations/${encodeURIComponent(station)}`);
  if (selected !== station) return;
  if (!res.ok) { $("detail-body").innerHTML = `<p class="error">${esc(station)}: not known</p>`; }
  else { $("detail-body").innerHTML = detailHtml(await res.json()); }
  $("detail").hidden = false;
  document.body.dataset.detail = station;
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => selected === station && openDetail(station), 3000);
}

function closeDetail() {
  selected = null; clearTimeout(detailTimer);
  $("detail").hidden = true; delete document.body.dataset.detail;
  history.replaceState(null, "", location.pathname);
}

async function command(cmd) {
  const station = selected;
  if (!station) return;
  if ((cmd === "ack" || cmd === "silence") && !confirm(`${cmd} ${station}?`)) return;
  const res = await post("/api/command", { station, cmd });
  $("cmd-result").textContent = res.ok ? `${cmd} sent (${res.doc.cmd_id}); the answer shows under events` :
    `${cmd} not sent: ${res.doc.error || res.doc.detail || res.status}`;
  setTimeout(() => selected === station && openDetail(station), 1000);
}

// --- session and login ------------------------------------------------------------------------

async function loadSession() {
  const res = await fetch("/api/session", { credentials: "same-origin" });
  session = await res.json();
  document.title = session.title || document.title;
  $("who").innerHTML = !session.commands ? `<span class="note">read-only</span>` :
    session.user ? `${esc(session.user)} <button type="button" id="logout">Log out</button>` :
      `<button type="button" id="login-open">Log in</button>`;
}

function openLogin() { $("login-error").textContent = ""; $("login").showModal(); }

async function doLogin(ev) {
  ev.preventDefault();
  const res = await post("/api/login", { user: $("login-user").value, password: $("login-password").value });
  if (!res.ok) { $("login-error").textContent = res.doc.error || `error ${res.status}`; return; }
  $("login-password").value = "";
  $("login").close();
  await loadSession();
  if (selected) openDetail(selected);
}

// --- the stream -------------------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/stream");
  es.onopen = () => { connected = true; link(); };
  es.onerror = () => { connected = false; link(); };
  es.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.now) offset = msg.now - Date.now() / 1000;
    if (msg.type === "snapshot") { rows.clear(); full = true; for (const r of msg.rows) take(r); }
    else if (msg.type === "rows") { for (const r of msg.rows) take(r); }
    else if (msg.type === "removed") { rows.delete(msg.station); full = true; }
    window.deskLastMessage = Date.now();
    schedule();
  };
}

function link() {
  $("link").textContent = connected ? "live" : "DESK UNREACHABLE — retrying";
  $("link").className = connected ? "link-up" : "link-down";
}

document.addEventListener("DOMContentLoaded", async () => {
  $("sound").addEventListener("click", enableSound);
  $("region").addEventListener("change", redraw);
  $("search").addEventListener("input", redraw);
  $("rows").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-station]");
    if (tr) openDetail(tr.dataset.station);
  });
  document.addEventListener("click", (e) => {
    const t = e.target;
    if (t.dataset.seen) markSeen(t.dataset.seen);
    else if (t.dataset.cmd) command(t.dataset.cmd);
    else if (t.dataset.login || t.id === "login-open") openLogin();
    else if (t.id === "logout") post("/api/logout", {}).then(loadSession);
    else if (t.id === "detail-close") closeDetail();
    else if (t.id === "show-all") { showAll = true; redraw(); }
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && selected) closeDetail(); });
  $("login-form").addEventListener("submit", doLogin);
  $("login-cancel").addEventListener("click", () => $("login").close());
  await loadSession();
  connect();
  setInterval(() => {                     // ages, the banner and the clock move on
    tickAges();
    $("clock").textContent = new Date(now() * 1000).toLocaleString([], { hour12: false });
  }, 1000);
  setInterval(redraw, 30000);             // and a full redraw now and then, to be sure
  const fromHash = () => {
    const m = location.hash.match(/^#station=(.+)$/);
    if (m && decodeURIComponent(m[1]) !== selected) openDetail(decodeURIComponent(m[1]));
  };
  window.addEventListener("hashchange", fromHash);
  fromHash();
});
