// The crier dashboard: a single page over crierd's /api/v1. The token is kept
// in sessionStorage (this tab only) and sent as a bearer token; live updates
// come from one Server-Sent Events stream read with fetch, so the token never
// goes into a URL. No framework, no network access beyond crierd.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "crier.dashboard.token";
const $ = (sel) => document.querySelector(sel);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  role: "",
  jobs: null,          // last /api/v1/jobs answer
  fleet: null,         // last /api/v1/fleet answer
  job: null,           // the job page's last /api/v1/jobs/<id> answer
  samples: {},         // job id -> [[t_ms, messages done]] seen live
  stream: null,        // AbortController of the event stream
  jobFetch: 0,         // time of the last job page refresh
};

// ---- helpers ----

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function fmtInt(n) {
  return (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-GB");
}

function fmtRate(r) {
  return r > 0 ? `${r >= 100 ? Math.round(r) : r.toFixed(1)}/s` : "–";
}

function fmtDur(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function fmtTime(ms) {
  if (!ms) return "–";
  return new Date(ms).toLocaleString("en-GB", { hour12: false });
}

function stateTag(s) {
  const words = { breaker_open: "breaker open", failing_over: "failing over" };
  return el("span", { class: `state state-${s}` }, words[s] || s);
}

function setStatus(text) { $("#status").textContent = text; }

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  o.headers.Authorization = `Bearer ${state.token}`;
  const resp = await fetch(API + path, o);
  if (resp.status === 401) {
    signOut("Your token was not accepted. Sign in again.");
    throw new Error("unauthorized");
  }
  return resp;
}

async function getJSON(path) {
  const resp = await api(path);
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

// ---- sign-in ----

function showSignIn(message) {
  $("#signin").hidden = false;
  $("#view").replaceChildren();
  $("#signout").hidden = true;
  $("#who").textContent = "";
  $("#signin-err").textContent = message || "";
  $("#live").textContent = "not signed in";
  $("#token").focus();
}

function signOut(message) {
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

async function signIn(token) {
  state.token = token;
  let who;
  try {
    who = await getJSON("/whoami");
  } catch (e) {
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.role = who.role;
  $("#signin").hidden = true;
  $("#signout").hidden = false;
  $("#who").textContent = `Signed in as ${who.name} (${who.role})`;
  startStream();
  route();
}

// ---- the event stream ----

async function startStream() {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  for (;;) {
    try {
      const resp = await fetch(`${API}/events`, {
        headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
        signal: ctl.signal,
      });
      if (resp.status === 401) { signOut("Your token was not accepted. Sign in again."); return; }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      $("#live").textContent = "connected";
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          onEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    if (ctl.signal.aborted) return;
    $("#live").textContent = "reconnecting";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onEvent(block) {
  let type = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;
  let doc;
  try { doc = JSON.parse(data); } catch (e) { return; }
  if (type === "jobs") {
    state.jobs = doc;
    for (const j of doc.jobs) {
      const s = state.samples[j.id] || (state.samples[j.id] = []);
      const last = s[s.length - 1];
      if (!last || last[1] !== j.done) s.push([doc.now_ms, j.done]);
      if (s.length > 600) s.shift();
    }
    const r = currentRoute();
    if (r.view === "jobs") renderJobs();
    else if (r.view === "job" && jobChanged(r.id, doc)) refreshJob(r.id, false);
  } else if (type === "fleet") {
    state.fleet = doc;
    const r = currentRoute();
    if (r.view === "fleet") renderFleet();
    else if (r.view === "jobs") renderFleetSummary();
  }
}

// ---- routes ----

function currentRoute() {
  const h = location.hash || "#/";
  if (h.startsWith("#/job/")) return { view: "job", id: decodeURIComponent(h.slice(6)) };
  if (h === "#/fleet") return { view: "fleet" };
  return { view: "jobs" };
}

async function route() {
  if (!state.token) { showSignIn(); return; }
  const r = currentRoute();
  state.job = null;
  try {
    if (r.view === "jobs") {
      if (!state.jobs) state.jobs = await getJSON("/jobs");
      if (!state.fleet) state.fleet = await getJSON("/fleet");
      renderJobs();
    } else if (r.view === "fleet") {
      state.fleet = await getJSON("/fleet");
      renderFleet();
    } else {
      await refreshJob(r.id, true);
    }
  } catch (e) {
    if (e.message !== "unauthorized") setStatus(`Could not load: ${e.message}`);
  }
}

// ---- the jobs list ----

function progressCell(j) {
  const pct = j.progress === null ? null : Math.round(j.progress * 100);
  return el("td", {},
    el("div", { class: "progress" },
      pct === null
        ? el("progress", { "aria-label": `Progress of ${j.id}: not known yet` })
        : el("progress", { max: "100", value: String(pct), "aria-label": `Progress of ${j.id}` }),
      el("span", {}, pct === null ? "–" : `${pct}%`)));
}

function renderJobs() {
  const view = $("#view");
  const jobs = (state.jobs && state.jobs.jobs) || [];
  const rows = jobs.map((j) => el("tr", { class: j.priority === "urgent" ? "urgent" : null, "data-job": j.id },
    el("th", { scope: "row" }, el("a", { href: `#/job/${encodeURIComponent(j.id)}` }, j.id)),
    el("td", {}, j.priority === "urgent" ? el("span", { class: "badge-urgent" }, "URGENT") : j.priority),
    el("td", {}, stateTag(j.state)),
    progressCell(j),
    el("td", { class: "num" }, fmtInt(j.done)),
    el("td", { class: "num hide-narrow" }, fmtInt(j.targeted)),
    el("td", { class: "num" }, fmtRate(j.rate)),
    el("td", { class: "num hide-narrow" }, j.eta_ms === null ? "–" : fmtDur(j.eta_ms))));
  view.replaceChildren(
    el("h2", {}, "Jobs"),
    el("div", { id: "fleet-summary" }),
    el("div", { class: "table-wrap" },
      el("table", { id: "jobs" },
        el("caption", {}, `The ${jobs.length} most recent jobs`),
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Job"), el("th", { scope: "col" }, "Priority"),
          el("th", { scope: "col" }, "State"), el("th", { scope: "col" }, "Progress"),
          el("th", { scope: "col", class: "num" }, "Messages"),
          el("th", { scope: "col", class: "num hide-narrow" }, "Residents"),
          el("th", { scope: "col", class: "num" }, "Rate"),
          el("th", { scope: "col", class: "num hide-narrow" }, "Time left"))),
        el("tbody", {}, rows))));
  renderFleetSummary();
}

function renderFleetSummary() {
  const box = $("#fleet-summary");
  if (!box || !state.fleet) return;
  const nodes = state.fleet.nodes || [];
  const troubled = [];
  for (const n of nodes)
    for (const p of n.providers)
      if (p.state !== "ok") troubled.push(`${p.name} on ${n.node}: ${p.state.replace("_", " ")}`);
  box.replaceChildren(el("p", {},
    `${nodes.length} crierd node${nodes.length === 1 ? "" : "s"} live. `,
    troubled.length ? `Attention: ${troubled.join("; ")}. ` : "All providers OK. ",
    el("a", { href: "#/fleet" }, "Fleet details")));
}

// ---- the fleet ----

function renderFleet() {
  const nodes = (state.fleet && state.fleet.nodes) || [];
  const parts = nodes.map((n) => el("section", { class: "node", "aria-label": `Node ${n.node}`, "data-node": n.node },
    el("h3", {}, n.node),
    el("p", {}, `Host ${n.host}, version ${n.version}, up ${fmtDur(state.fleet.now_ms - n.started_ms)}; `,
      `${fmtInt(n.jobs)} jobs and ${fmtInt(n.batches)} batches in hand, ${fmtInt(n.inflight)} messages in flight`,
      n.stopping ? "; stopping" : ""),
    el("div", { class: "table-wrap" }, el("table", {},
      el("caption", {}, `Providers on ${n.node}`),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Provider"), el("th", { scope: "col" }, "State"),
        el("th", { scope: "col", class: "num" }, "In flight"),
        el("th", { scope: "col", class: "num" }, "Rate (10 s)"),
        el("th", { scope: "col", class: "num" }, "p50"),
        el("th", { scope: "col", class: "num" }, "p99"),
        el("th", { scope: "col", class: "num hide-narrow" }, "Errors (10 s)"),
        el("th", { scope: "col", class: "num hide-narrow" }, "Rate limit refills in"))),
      el("tbody", {}, n.providers.map((p) => el("tr", { "data-provider": p.name },
        el("th", { scope: "row" }, `${p.name} (${p.channel})`),
        el("td", {}, stateTag(p.state)),
        el("td", { class: "num" }, fmtInt(p.inflight)),
        el("td", { class: "num" }, fmtRate(p.rate_10s)),
        el("td", { class: "num" }, p.p50_ms ? `${p.p50_ms.toFixed(1)} ms` : "–"),
        el("td", { class: "num" }, p.p99_ms ? `${p.p99_ms.toFixed(1)} ms` : "–"),
        el("td", { class: "num hide-narrow" }, Object.entries(p.errors_10s)
          .filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(", ") || "none"),
        el("td", { class: "num hide-narrow" }, p.refill_ms > 0 ? `${p.refill_ms} ms` : "now"))))))));
  $("#view").replaceChildren(el("h2", {}, "Fleet"),
    ...(nodes.length ? parts : [el("p", {}, "No crierd has sent a heartbeat in the last few seconds.")]));
}

// ---- a job ----

// Whether the jobs list says something new about job id (the job page is
// redrawn only then, so that a finished job's page stays still).
function jobChanged(id, doc) {
  const j = doc.jobs.find((x) => x.id === id);
  const cur = state.job && state.job.job;
  return !cur || !j || j.state !== cur.state || j.done !== cur.done;
}

async function refreshJob(id, first) {
  const now = Date.now();
  if (!first && now - state.jobFetch < 900) return;
  state.jobFetch = now;
  const resp = await api(`/jobs/${encodeURIComponent(id)}`);
  if (resp.status === 404) {
    $("#view").replaceChildren(el("h2", {}, "Job not found"), el("p", {}, `There is no job ${id}.`));
    return;
  }
  if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
  state.job = await resp.json();
  if (currentRoute().id === id) renderJob(first);
}

function chart(series) {
  // messages per second between successive points, as an inline SVG line
  const W = 640, H = 200, L = 48, B = 28, T = 10, R = 10;
  const pts = [];
  let prev = series[0];
  for (let i = 1; i < series.length; i++) {
    const dt = (series[i][0] - prev[0]) / 1000;
    if (dt < 0.5 && i < series.length - 1) continue; // too close to say a rate
    if (dt > 0) pts.push([series[i][0], Math.max(0, (series[i][1] - prev[1]) / dt)]);
    prev = series[i];
  }
  const svg = (tag, attrs, ...kids) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const k of kids) e.append(k);
    return e;
  };
  const maxV = Math.max(1, ...pts.map((p) => p[1]));
  const t0 = pts.length ? pts[0][0] : 0, t1 = pts.length ? pts[pts.length - 1][0] : 1;
  const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * (W - L - R);
  const y = (v) => T + (1 - v / maxV) * (H - T - B);
  const peak = pts.length ? Math.round(Math.max(...pts.map((p) => p[1]))) : 0;
  const desc = pts.length
    ? `Messages per second over ${fmtDur(t1 - t0)}: peak ${peak} per second, last ${Math.round(pts[pts.length - 1][1])} per second.`
    : "Not enough progress yet to draw messages per second.";
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-t chart-d" },
    svg("title", { id: "chart-t" }, "Messages per second"),
    svg("desc", { id: "chart-d" }, desc),
    svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
    svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
    svg("text", { x: 4, y: T + 10 }, `${Math.round(maxV)}/s`),
    svg("text", { x: 4, y: H - B }, "0"),
    svg("text", { x: L, y: H - 8 }, pts.length ? new Date(t0).toLocaleTimeString("en-GB") : ""),
    svg("text", { x: W - R - 60, y: H - 8 }, pts.length ? new Date(t1).toLocaleTimeString("en-GB") : ""));
  if (pts.length) root.append(svg("polyline", { class: "line", points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
  return el("figure", {}, root, el("figcaption", {}, desc));
}

// The job's own channels (step 0) and its escalation steps: messages,
// outcomes, confirmations and time from the step's start to delivery.
function stepsSection(j) {
  if (!j.steps && !j.confirmations) return [];
  const out = [];
  const ttd = (t) => {
    if (!t || !t.n) return "–";
    const b = (v) => (v === null ? "> 1 h" : `≤ ${fmtDur(v * 1000)}`);
    const mean = t.mean_ms < 10000 ? `${(t.mean_ms / 1000).toFixed(1)} s` : fmtDur(t.mean_ms);
    return `mean ${mean}, median ${b(t.p50_s)}, p95 ${b(t.p95_s)} (${fmtInt(t.n)})`;
  };
  if (j.steps) {
    out.push(el("h3", {}, "Escalation steps"),
      el("div", { class: "table-wrap" }, el("table", { id: "steps" },
        el("caption", {}, "Each step's messages, outcomes and time to delivery"),
        el("thead", {}, el("tr", {}, ["Step", "Channels", "When", "Messages", "Sent", "Delivered", "Failed", "Confirmed", "Time to delivery"]
          .map((h, i) => el("th", { scope: "col", class: i >= 3 && i <= 7 ? "num" : null }, h)))),
        el("tbody", {}, j.steps.map((st) => el("tr", { "data-step": String(st.step) },
          el("th", { scope: "row" }, st.step === 0 ? "first" : String(st.step)),
          el("td", {}, st.channels.join(", ")),
          el("td", {}, st.step === 0 ? "at the start"
            : `after ${fmtDur(st.after_s * 1000)} unless ${st.unless}${st.ran_ms ? `, ran ${fmtTime(st.ran_ms)}` : ", not yet"}`),
          ...["messages", "sent", "delivered", "failed", "confirmed"].map((k) =>
            el("td", { class: "num", "data-k": k }, fmtInt(st[k]))),
          el("td", { "data-k": "to_delivery" }, ttd(st.to_delivery))))))));
  }
  if (j.confirmations) {
    const c = j.confirmations;
    out.push(el("h3", {}, "Confirmations"),
      el("ul", { class: "cards", id: "confirmations" },
        el("li", {}, el("span", { class: "k" }, "Confirmed"), el("span", { class: "v", "data-k": "total" }, fmtInt(c.total))),
        ...Object.keys(c.channels).filter((k) => c.channels[k] > 0).map((k) =>
          el("li", {}, el("span", { class: "k" }, `by ${k}`), el("span", { class: "v", "data-k": `channel-${k}` }, fmtInt(c.channels[k])))),
        ...Object.keys(c.via).map((k) =>
          el("li", {}, el("span", { class: "k" }, `via ${k}`), el("span", { class: "v", "data-k": `via-${k}` }, fmtInt(c.via[k]))))));
  }
  return out;
}

function renderJob(first) {
  const d = state.job;
  const j = d.job;
  const live = state.samples[j.id] || [];
  const series = d.series.concat(live.filter((s) => !d.series.length || s[0] > d.series[d.series.length - 1][0]));
  const finished = ["completed", "cancelled", "expired"].includes(j.state);
  const channels = Object.keys(j.channels);
  const statuses = ["delivered", "sent", "failed", "bounced", "suppressed", "expired", "cancelled", "skipped"];
  const cancel = state.role === "operator" && !finished && j.state !== "cancelling"
    ? el("button", { type: "button", class: "danger", id: "cancel", onclick: () => cancelJob(j.id) }, "Cancel this job")
    : null;
  const view = $("#view");
  const focused = document.activeElement && document.activeElement.id;
  const areas = areasFor.startsWith(`${j.id}/`) && $("#areas") ? $("#areas") : null;
  const communities = communitiesFor.startsWith(`${j.id}/`) && $("#communities") ? $("#communities") : null;
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "All jobs")),
    el("h2", {}, `Job ${j.id} `, j.priority === "urgent" ? el("span", { class: "badge-urgent" }, "URGENT") : null),
    el("ul", { class: "cards" },
      el("li", {}, el("span", { class: "k" }, "State"), el("span", { class: "v", id: "job-state" }, stateTag(j.state))),
      el("li", {}, el("span", { class: "k" }, "Priority"), el("span", { class: "v" }, j.priority)),
      el("li", {}, el("span", { class: "k" }, "Residents"), el("span", { class: "v" }, fmtInt(j.targeted))),
      el("li", {}, el("span", { class: "k" }, "Messages done"), el("span", { class: "v", id: "job-done" }, fmtInt(j.done))),
      el("li", {}, el("span", { class: "k" }, "Progress"), el("span", { class: "v", id: "job-progress" }, j.progress === null ? "–" : `${Math.round(j.progress * 100)}%`)),
      el("li", {}, el("span", { class: "k" }, "Rate"), el("span", { class: "v" }, fmtRate(j.rate))),
      el("li", {}, el("span", { class: "k" }, "Time left"), el("span", { class: "v" }, finished ? "done" : fmtDur(j.eta_ms)))),
    ...(cancel ? [cancel] : []),
    el("p", { id: "cancel-msg", role: "status" }),
    el("h3", {}, "Progress per channel"),
    el("div", { class: "table-wrap" }, el("table", { id: "channels" },
      el("caption", {}, "Messages by channel and outcome"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Channel"),
        statuses.map((s) => el("th", { scope: "col", class: "num" }, s)))),
      el("tbody", {}, channels.map((c) => el("tr", { "data-channel": c }, el("th", { scope: "row" }, c),
        statuses.map((s) => el("td", { class: "num", "data-status": s }, fmtInt(j.channels[c][s] || 0)))))))),
    ...stepsSection(j),
    el("h3", {}, "Messages per second"),
    chart(series),
    el("h3", {}, "Outcomes and failure reasons"),
    el("div", { class: "table-wrap" }, el("table", { id: "reasons" },
      el("caption", {}, "Why messages did not arrive, by provider code"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Outcome"), el("th", { scope: "col" }, "Code"), el("th", { scope: "col", class: "num" }, "Messages"))),
      el("tbody", {}, d.reasons.length ? d.reasons.map((r) => el("tr", {}, el("td", {}, r.status), el("td", {}, r.code), el("td", { class: "num" }, fmtInt(r.count))))
        : el("tr", {}, el("td", { colspan: "3" }, "None"))))),
    el("h3", {}, "Reach per area"),
    areas || el("div", { id: "areas" }, el("p", {}, "Loading the per-area table…")),
    el("h3", {}, "Reach by community"),
    communities || el("div", { id: "communities" }, el("p", {}, "Loading the per-community table…")),
    el("h3", {}, "Timeline"),
    el("ol", { id: "timeline" }, d.events.map((e) => el("li", {}, `${fmtTime(e.t_ms)}: ${e.event}`,
      e.detail ? ` (${e.detail})` : ""))));
  if (first || finished) loadAreas(j.id, finished);
  if (first || finished) loadCommunities(j.id, finished);
  if (first) $("#main").focus();
  else if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

// RFC 4180: fields may be quoted, with "" for a quote inside.
function parseCSV(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      rows.push(row); row = [];
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows;
}

let areasFor = "";
async function loadAreas(id, finished) {
  const key = `${id}/${finished}`;
  if (areasFor === key && $("#areas table")) return;
  const box = $("#areas");
  const resp = await api(`/jobs/${encodeURIComponent(id)}/report.csv`);
  if (!resp.ok) { box.replaceChildren(el("p", {}, `The per-area table is not available (HTTP ${resp.status}).`)); return; }
  const text = await resp.text();
  areasFor = key;
  const rows = parseCSV(text);
  const head = rows.shift() || [];
  const want = ["segment", "residents_targeted", "residents_reached", "delivered", "replies", "reply_rate"];
  const extra = head.filter((h) => h === "survey_responses" || h.startsWith("option_") ||
    h === "confirmed" || /^step\d+_(messages|sent|delivered)$/.test(h));
  const cols = want.concat(extra).map((c) => head.indexOf(c)).filter((i) => i >= 0);
  const blob = new Blob([text], { type: "text/csv" });
  const cur = $("#areas");
  if (!cur) return;
  cur.replaceChildren(
    el("div", { class: "table-wrap" }, el("table", { id: "areas-table" },
      el("caption", {}, "Targeted, reached, delivered, replies, survey answers, confirmations and escalation steps per area"),
      el("thead", {}, el("tr", {}, cols.map((i) => el("th", { scope: "col", class: i ? "num" : null }, head[i].replaceAll("_", " "))))),
      el("tbody", {}, rows.map((r) => el("tr", { "data-segment": r[0] }, cols.map((i, k) => k === 0
        ? el("th", { scope: "row" }, r[i]) : el("td", { class: "num" }, r[i] || ""))))))),
    el("p", {}, el("a", { href: URL.createObjectURL(blob), download: `${id}-report.csv`, id: "csv" }, "Download this table as CSV (the same as crierctl report)")));
}

// Every segment of the demographic families (demo:*), targeted or not:
// crierctl report --by 'demo:*'.
let communitiesFor = "";
async function loadCommunities(id, finished) {
  const key = `${id}/${finished}`;
  if (communitiesFor === key && $("#communities table")) return;
  const resp = await api(`/jobs/${encodeURIComponent(id)}/report.csv?by=${encodeURIComponent("demo:*")}`);
  const box = $("#communities");
  if (!box) return;
  if (!resp.ok) { box.replaceChildren(el("p", {}, `The per-community table is not available (HTTP ${resp.status}).`)); return; }
  const text = await resp.text();
  communitiesFor = key;
  const rows = parseCSV(text);
  const head = rows.shift() || [];
  const cols = ["segment", "residents_targeted", "residents_reached", "delivered", "responded"]
    .map((c) => head.indexOf(c)).filter((i) => i >= 0);
  box.replaceChildren(
    el("div", { class: "table-wrap" }, el("table", { id: "communities-table" },
      el("caption", {}, "Targeted, reached, delivered and responded per community (segments demo:*)"),
      el("thead", {}, el("tr", {}, cols.map((i) => el("th", { scope: "col", class: i ? "num" : null }, head[i].replaceAll("_", " "))))),
      el("tbody", {}, rows.map((r) => el("tr", { "data-segment": r[0] }, cols.map((i, k) => k === 0
        ? el("th", { scope: "row" }, r[i]) : el("td", { class: "num" }, r[i] || ""))))))));
}

async function cancelJob(id) {
  if (!window.confirm(`Cancel job ${id}? Messages already handed to a provider are not recalled.`)) return;
  const resp = await api(`/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  const body = await resp.json().catch(() => ({}));
  $("#cancel-msg").textContent = resp.ok ? `Cancellation requested (${body.result}).` : `Could not cancel: ${body.error || resp.status}`;
  refreshJob(id, true);
}

// ---- start ----

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  if (state.token) signIn(state.token);
  else showSignIn();
});
