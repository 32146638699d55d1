// Sluice dashboard: a list of rollouts and one rollout's live view, both fed by Server-Sent Events
// from the server's watches. Data is only ever put on the page with textContent/attributes, never
// as HTML. Charts are hand-drawn SVG (two small line charts do not need a library).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let csrf = "";
let fixedNamespace = null;
let source = null;
let pendingAction = null;
// Backtest results by "namespace/name": kept across the live re-renders of the rollout view.
const backtests = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
}

function badge(text, kind) {
  return el("span", { class: "badge " + String(kind || text).replace(/[^A-Za-z]/g, "") }, text);
}

function dash(value) {
  return value === null || value === undefined || value === "" ? "-" : String(value);
}

function shortSha(sha) {
  return sha && /^[0-9a-f]{40}$/.test(sha) ? sha.slice(0, 8) : dash(sha);
}

function revisionText(rev) {
  if (!rev) return "-";
  const parts = [rev.revision ? "#" + rev.revision : null, rev.hash, rev.gitRevision ? "@" + shortSha(rev.gitRevision) : null];
  return parts.filter(Boolean).join(" ");
}

function weightCell(weight) {
  if (weight === null || weight === undefined) return el("span", { class: "muted" }, "-");
  const pct = Math.max(0, Math.min(100, Number(weight)));
  return el("div", { class: "weight" },
    el("div", { class: "bar" }, el("span", { style: null, "data-w": pct })),
    el("span", { class: "mono" }, pct + "%"));
}

// CSP forbids inline style attributes from markup but allows setting them from script.
function applyWidths(root) {
  for (const span of root.querySelectorAll("[data-w]")) span.style.width = span.getAttribute("data-w") + "%";
}

function setLive(on, text) {
  const live = document.getElementById("live");
  live.className = "live " + (on ? "on" : "off");
  live.textContent = text;
}

function connect(url, handlers) {
  if (source) source.close();
  source = new EventSource(url);
  source.onopen = () => setLive(true, "live");
  source.onerror = () => setLive(false, "reconnecting…");
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      setLive(true, "live");
      handler(JSON.parse(event.data));
    });
  }
}

function route() {
  const hash = location.hash || "#/";
  const detail = hash.match(/^#\/rollouts\/([a-z0-9.-]{1,63})\/([a-z0-9.-]{1,253})$/);
  if (detail) return showRollout(detail[1], detail[2]);
  const ns = hash.match(/^#\/\?namespace=([a-z0-9.-]{1,63})$/);
  return showList(ns ? ns[1] : fixedNamespace);
}

// ---- the rollouts list ----

function showList(namespace) {
  const main = document.getElementById("main");
  main.replaceChildren(el("h1", null, "Rollouts"), el("p", { class: "muted" }, "Loading…"));
  const query = namespace ? "?namespace=" + encodeURIComponent(namespace) : "";
  connect("/api/stream" + query, { rollouts: (data) => renderList(data, namespace) });
}

function renderList(data, namespace) {
  const main = document.getElementById("main");
  const select = el("select", {
    id: "namespace", disabled: fixedNamespace ? "disabled" : null,
    onchange: (e) => { location.hash = e.target.value ? "#/?namespace=" + e.target.value : "#/"; },
  }, el("option", { value: "" }, "All namespaces"),
    data.namespaces.map((ns) => el("option", { value: ns, selected: ns === namespace ? "selected" : null }, ns)));
  const head = el("tr", null, ["Name", "Namespace", "Status", "Step", "Weight (canary)", "Ready", "Stable", "Canary", "Git commit", "Age"].map((h) => el("th", null, h)));
  const rows = data.rollouts.map((r) => el("tr", { "data-name": r.name, "data-namespace": r.namespace },
    el("td", null, el("a", { href: "#/rollouts/" + r.namespace + "/" + r.name }, r.name)),
    el("td", null, r.namespace),
    el("td", null, badge(r.phase), r.aborted ? [" ", badge("Aborted")] : null, r.paused ? [" ", badge("spec.paused", "Paused")] : null),
    el("td", { class: "mono" }, r.step),
    el("td", null, weightCell(r.actualWeight ?? r.setWeight)),
    el("td", { class: "mono" }, r.ready),
    el("td", { class: "mono" }, revisionText(r.stable)),
    el("td", { class: "mono" }, revisionText(r.canary)),
    el("td", { class: "mono", title: r.gitCommit || "" }, shortSha(r.gitCommit), r.gitSync ? el("div", { class: "muted" }, r.gitSync) : null),
    el("td", null, r.age)));
  const table = rows.length
    ? el("table", { id: "rollouts" }, el("thead", null, head), el("tbody", null, rows))
    : el("div", { class: "empty" }, "No rollouts" + (namespace ? " in " + namespace : "") + ".");
  main.replaceChildren(...[
    el("h1", null, "Rollouts", el("span", { class: "muted" }, String(data.rollouts.length))),
    data.error ? el("div", { class: "error" }, data.error) : null,
    el("div", { class: "toolbar" }, el("label", { for: "namespace" }, "Namespace"), select),
    el("div", { class: "panel table-panel" }, table)].filter(Boolean));
  applyWidths(main);
}

// ---- one rollout ----

const ACTIONS = [
  { id: "promote", label: "Promote", text: "Skip the current step (a pause or an analysis) and go on to the next." },
  { id: "promote-full", label: "Promote full", text: "Skip every remaining step and analysis: the new version gets all traffic.", danger: true },
  { id: "abort", label: "Abort", text: "Send all traffic back to the stable version and scale the canary down.", danger: true },
  { id: "retry", label: "Retry", text: "Start an aborted rollout's steps again from the first." },
  { id: "pause", label: "Pause", text: "Stop at the current step until resumed (sets spec.paused)." },
  { id: "resume", label: "Resume", text: "Continue a paused rollout (clears spec.paused)." },
];

function showRollout(namespace, name) {
  const main = document.getElementById("main");
  main.replaceChildren(el("p", { class: "muted" }, "Loading " + namespace + "/" + name + "…"));
  const base = "/api/rollouts/" + namespace + "/" + name;
  connect(base + "/stream", {
    rollout: (data) => renderRollout(data, namespace, name),
    failure: (data) => main.replaceChildren(backLink(), el("div", { class: "error" }, data.error)),
  });
}

function backLink() {
  return el("p", null, el("a", { href: "#/" }, "← All rollouts"));
}

function renderRollout(d, namespace, name) {
  const r = d.rollout;
  const main = document.getElementById("main");
  const actions = el("div", { class: "actions" }, ACTIONS.map((a) => el("button", {
    class: "button" + (a.danger ? " danger" : ""), "data-action": a.id,
    onclick: () => confirmAction(namespace, name, a),
  }, a.label)).concat([el("button", { class: "button", "data-action": "backtest",
    onclick: () => runBacktest(namespace, name, d) }, "Backtest (last 24 h)")]));
  const facts = el("dl", { class: "facts" },
    fact("Namespace", r.namespace), fact("Strategy", r.strategy), fact("Step", r.step),
    fact("Weight", r.actualWeight === null || r.actualWeight === undefined ? "-" : r.actualWeight + "% canary (set " + dash(r.setWeight) + "%)"),
    fact("Ready", r.ready), fact("Stable", revisionText(r.stable)), fact("Canary", revisionText(r.canary)),
    fact("Git commit", dash(r.gitCommit)), fact("Message", dash(r.message)), fact("Age", r.age));
  main.replaceChildren(
    backLink(),
    el("h1", null, r.name, badge(r.phase), r.aborted ? badge("Aborted") : null, r.paused ? badge("spec.paused", "Paused") : null, actions),
    el("div", { class: "grid" },
      el("section", { class: "panel" }, el("h2", null, "Summary"), facts),
      el("section", { class: "panel" }, el("h2", null, "Traffic weight over time"), weightChart(d.weights))),
    el("section", { class: "panel", style: null }, el("h2", null, "Steps"), timeline(d.steps)),
    el("section", { class: "panel" }, el("h2", null, "Analysis"), analysis(d.analysisRuns)),
    backtestPanel(backtests[namespace + "/" + name]),
    el("div", { class: "grid" },
      el("section", { class: "panel table-panel" }, el("h2", { class: "pad" }, "ReplicaSets"), replicaSets(d.replicaSets)),
      el("section", { class: "panel table-panel" }, el("h2", { class: "pad" }, "Pods (" + d.podsTotal + ")"), pods(d.pods))),
    el("div", { class: "stack" },
      d.gitSync ? el("section", { class: "panel" }, el("h2", null, "GitSync " + d.gitSync.namespace + "/" + d.gitSync.name), gitSync(d.gitSync)) : null,
      el("section", { class: "panel table-panel" }, el("h2", { class: "pad" }, "Recent events"), events(d.events))));
  for (const h of main.querySelectorAll("h2.pad")) h.style.padding = "14px 16px 0";
  applyWidths(main);
}

function fact(label, value) {
  return [el("dt", null, label), el("dd", null, value)];
}

function timeline(steps) {
  if (!steps.length) return el("p", { class: "muted" }, "No steps: the new version is rolled out at once.");
  return el("ol", { class: "timeline" }, steps.map((s, i) => el("li", { class: s.state }, el("span", { class: "n" }, String(i + 1)), s.text)));
}

function table(headers, rows, empty) {
  if (!rows.length) return el("div", { class: "empty" }, empty);
  return el("table", null, el("thead", null, el("tr", null, headers.map((h) => el("th", null, h)))), el("tbody", null, rows));
}

function replicaSets(list) {
  return table(["Name", "Role", "Revision", "Desired", "Ready", "Images", "Age"], list.map((rs) => el("tr", null,
    el("td", { class: "mono" }, rs.name), el("td", null, badge(rs.role)), el("td", null, dash(rs.revision)),
    el("td", null, rs.desired), el("td", null, rs.ready), el("td", { class: "mono" }, rs.images.join(", ")), el("td", null, rs.age))), "No ReplicaSets.");
}

function pods(list) {
  return table(["Name", "Phase", "Ready", "Restarts", "Age"], list.map((p) => el("tr", null,
    el("td", { class: "mono" }, p.name), el("td", null, badge(p.phase)), el("td", null, p.ready ? "yes" : "no"),
    el("td", null, p.restarts), el("td", null, p.age))), "No pods.");
}

function events(list) {
  return table(["Type", "Reason", "Message", "Age"], list.map((e) => el("tr", null,
    el("td", null, badge(e.type)), el("td", null, e.reason), el("td", null, e.message, e.count > 1 ? el("span", { class: "muted" }, " ×" + e.count) : null),
    el("td", null, e.age))), "No events.");
}

function gitSync(g) {
  return el("dl", { class: "facts" },
    fact("Last attempted", shortSha(g.lastAttempted)), fact("Last applied", shortSha(g.lastApplied)),
    fact("Last healthy", shortSha(g.lastHealthy)),
    fact("Blocked", g.blocked.length ? g.blocked.map((b) => el("div", null, el("span", { class: "mono" }, shortSha(b.revision)), " — " + b.reason + " (" + b.age + " ago)")) : "none"),
    g.message ? fact("Not ready", g.message) : null);
}

function analysis(runs) {
  if (!runs.length) return el("p", { class: "muted" }, "No analysis runs.");
  return runs.map((run) => el("div", { class: "metric" },
    el("h2", null, run.name + " ", badge(run.phase), el("span", { class: "muted" }, " " + run.age)),
    run.message ? el("p", { class: "muted" }, run.message) : null,
    run.metrics.map((m) => el("div", null,
      el("div", null, el("strong", null, m.name), " ", badge(m.phase),
        el("span", { class: "muted" }, "  " + m.successful + " ok · " + m.failed + " failed · " + m.inconclusive + " inconclusive · " + m.error + " errors")),
      el("div", { class: "conditions mono" },
        m.successCondition ? "success: " + m.successCondition : null, m.successCondition && m.failureCondition ? "   " : null,
        m.failureCondition ? "failure: " + m.failureCondition : null),
      metricChart(m)))));
}

// ---- backtest ----

async function runBacktest(namespace, name, d) {
  const key = namespace + "/" + name;
  if (backtests[key] && backtests[key].running) return;
  backtests[key] = { running: true };
  renderRollout(d, namespace, name);
  try {
    const response = await fetch("/api/rollouts/" + namespace + "/" + name + "/backtest", { credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    backtests[key] = response.ok ? { report: body } : { error: body.error || "HTTP " + response.status };
  } catch (e) {
    backtests[key] = { error: String(e) };
  }
  const current = document.getElementById("backtest");
  if (current) current.replaceWith(backtestPanel(backtests[key]));
}

function backtestPanel(state) {
  if (!state) return null;
  const body = state.running ? el("p", { class: "muted" }, "Running the rollout's analysis over the last 24 h…")
    : state.error ? el("div", { class: "error" }, state.error)
    : backtestTimeline(state.report);
  return el("section", { class: "panel", id: "backtest" }, el("h2", null, "Backtest (last 24 h)"), body);
}

function backtestTimeline(report) {
  const s = report.summary;
  const share = (n) => s.instants ? Math.round(100 * n / s.instants) + "%" : "-";
  const cells = report.evaluations.map((e) => el("span", {
    class: "cell " + e.phase,
    title: e.time + " " + e.phase + "\n" + e.metrics.map((m) => m.name + " = " + (m.value === null ? "error" : m.value) + " (" + m.phase + ")").join("\n"),
  }));
  return [
    el("div", { class: "backtest-line" }, cells),
    el("p", { class: "muted" }, s.instants + " instants: Successful " + share(s.successful) + " · Failed " + share(s.failed) +
      " · Inconclusive " + share(s.inconclusive) + " · Error " + share(s.error) + (s.running ? " · undecided " + share(s.running) : "")),
    el("p", { class: "muted" }, s.longestFailing ? "Longest failing stretch: " + s.longestFailing.from + " → " + s.longestFailing.to +
      " (" + s.longestFailing.instants + " instants)" : "No instant would have failed."),
  ];
}

// ---- charts ----

const W = 640, H = 190, L = 40, R = 10, T = 10, B = 24;

function frame(yMin, yMax, yTicks, xLabels) {
  const root = svg("svg", { class: "chart", viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "img" });
  const y = (v) => T + (H - T - B) * (1 - (v - yMin) / (yMax - yMin || 1));
  for (const tick of yTicks) {
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(tick), y2: y(tick) }));
    root.append(svg("text", { x: L - 6, y: y(tick) + 4, "text-anchor": "end" }, formatNumber(tick)));
  }
  root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  xLabels.forEach(([x, text, anchor]) => root.append(svg("text", { x, y: H - 6, "text-anchor": anchor }, text)));
  return { root, y };
}

function formatNumber(n) {
  if (Math.abs(n) >= 1000 || (Math.abs(n) < 0.01 && n !== 0)) return n.toExponential(1);
  return String(Math.round(n * 1000) / 1000);
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function weightChart(points) {
  if (!points.length) return el("p", { class: "muted" }, "No weight changes seen yet (recorded while the dashboard runs).");
  const start = points[0].t, end = Math.max(Date.now(), points[points.length - 1].t + 1000);
  const x = (t) => L + (W - L - R) * (t - start) / (end - start || 1);
  const { root, y } = frame(0, 100, [0, 25, 50, 75, 100], [[L, clock(start), "start"], [W - R, clock(end), "end"]]);
  const line = (value, cls) => {
    let d = "", last = null;
    for (const p of points) {
      const v = value(p);
      if (v === null || v === undefined) continue;
      d += (d ? " H" + x(p.t) + " V" : "M" + x(p.t) + " ") + y(v);
      last = v;
    }
    if (!d) return;
    d += " H" + x(end);
    root.append(svg("path", { class: cls, d }));
  };
  line((p) => p.actual, "canary");
  line((p) => (p.actual === null || p.actual === undefined ? null : 100 - p.actual), "stable");
  line((p) => p.set, "set");
  return el("div", null, root, el("div", { class: "legend" },
    el("span", null, el("i", { "data-c": "canary" }), "canary (router)"),
    el("span", null, el("i", { "data-c": "stable" }), "stable"),
    el("span", null, el("i", { "data-c": "set" }), "canary (steps ask)")));
}

function firstNumber(text) {
  const match = String(text ?? "").match(/-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?/);
  return match ? Number(match[0]) : null;
}

// The number a condition compares `result` with (`result < 0.05`, `result[0] >= 0.9`), if any.
function threshold(condition) {
  const match = String(condition ?? "").match(/(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/);
  return match ? Number(match[2]) : null;
}

function metricChart(m) {
  const values = m.measurements.map((x) => ({ v: firstNumber(x.value), phase: x.phase, at: x.finishedAt })).filter((x) => x.v !== null);
  if (!values.length) return el("p", { class: "muted" }, m.measurements.length ? "Measurements are not numeric." : "No measurements yet.");
  const lines = [[threshold(m.successCondition), "success"], [threshold(m.failureCondition), "failure"]].filter(([v]) => v !== null);
  const all = values.map((x) => x.v).concat(lines.map(([v]) => v));
  let lo = Math.min(...all), hi = Math.max(...all);
  if (lo === hi) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const x = (i) => L + (W - L - R) * (values.length === 1 ? 0.5 : i / (values.length - 1));
  const { root, y } = frame(lo, hi, [lo, (lo + hi) / 2, hi], [[L, "#1", "start"], [W - R, "#" + values.length, "end"]]);
  for (const [v, kind] of lines) root.append(svg("line", { class: "threshold " + kind, x1: L, x2: W - R, y1: y(v), y2: y(v) }));
  root.append(svg("path", { class: "value", d: values.map((p, i) => (i ? "L" : "M") + x(i) + " " + y(p.v)).join(" ") }));
  values.forEach((p, i) => {
    const cls = p.phase === "Successful" ? "ok" : p.phase === "Failed" || p.phase === "Error" ? "bad" : "other";
    root.append(svg("circle", { class: cls, cx: x(i), cy: y(p.v), r: 3.5 }, svg("title", null, p.phase + ": " + p.v)));
  });
  return el("div", null, root, el("div", { class: "legend" },
    el("span", null, "● measurement (green ok, red failed)"),
    lines.map(([v, kind]) => el("span", null, el("i", { "data-c": kind }), kind + " threshold " + v))));
}

// ---- actions ----

function confirmAction(namespace, name, action) {
  pendingAction = { namespace, name, action };
  document.getElementById("modal-title").textContent = action.label + " " + namespace + "/" + name + "?";
  document.getElementById("modal-text").textContent = action.text;
  const confirm = document.getElementById("modal-confirm");
  confirm.textContent = action.label;
  confirm.className = "button primary" + (action.danger ? " danger" : "");
  document.getElementById("modal").hidden = false;
  confirm.focus();
}

function closeModal() {
  pendingAction = null;
  document.getElementById("modal").hidden = true;
}

async function runPending() {
  const pending = pendingAction;
  closeModal();
  if (!pending) return;
  const { namespace, name, action } = pending;
  try {
    const response = await fetch("/api/rollouts/" + namespace + "/" + name + "/" + action.id, {
      method: "POST", headers: { "X-Sluice-CSRF": csrf }, credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    toast(response.ok ? body.message || action.label + ": done" : body.error || "HTTP " + response.status, !response.ok);
  } catch (e) {
    toast(action.label + " failed: " + e, true);
  }
}

function toast(message, bad) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.className = "toast" + (bad ? " bad" : "");
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 6000);
}

async function start() {
  document.getElementById("modal-cancel").addEventListener("click", closeModal);
  document.getElementById("modal-confirm").addEventListener("click", runPending);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeModal(); });
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (response.ok) {
    const session = await response.json();
    csrf = session.csrf;
    fixedNamespace = session.namespace || null;
  }
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", start);
