// The Mailchimp sync dashboard: plain JS over the JSON API beside it (api/...). Every value from
// the API is put on the page as text (textContent), never as HTML.
"use strict";

const TABS = [
  ["failed", "Failed"], ["pending", "Pending"], ["quarantined", "Quarantined"], ["skipped", "Skipped"],
  ["archived", "Archived/Cleaned"], ["unsubscribed", "Unsubscribed in Mailchimp"], ["plan", "Plan (dry run)"],
];
const ACTION_LABELS = {
  sync_now: "Sync now", sync_all: "Sync all", dry_run: "Dry run", retry_failed: "Retry failed",
  refresh: "Refresh", create_audience: "Create audience",
};
const COLORS = { ok: "#2e7d32", failed: "#c62828", skipped: "#9e9e9e", pending: "#f9a825" };
const SVG = "http://www.w3.org/2000/svg";
let me = null;

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  return request("api/" + path, options);
}

async function request(url, options = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map(d => d.msg || JSON.stringify(d)).join("; ") : body.detail;
    throw Object.assign(new Error(detail ? String(detail) : `HTTP ${response.status}`), { status: response.status, body });
  }
  return body;
}

// Unpausing goes through Airflow's own REST API (PATCH /api/v2/dags/{dag_id}), signed in with the
// same session cookie: Airflow checks the user's permission to edit the DAG and audit-logs it.
async function unpause(dagId) {
  await request(`${me.ui_base}/api/v2/dags/${encodeURIComponent(dagId)}?update_mask=is_paused`, {
    method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ is_paused: false }),
  });
}

function say(text, error = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = !text;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

function link(href, text) {
  return href ? el("a", { href: href, target: "_top" }, text) : text;
}

// ------------------------------------------------------------------------------------------------
// overview
// ------------------------------------------------------------------------------------------------
function trendChart(trend) {
  const svg = el("svg:svg", { class: "trend", viewBox: "0 0 300 48", preserveAspectRatio: "none", "data-testid": "trend" });
  if (!trend.length || trend[0].ok === undefined) {
    trend.forEach((run, i) => {
      const color = run.state === "success" ? COLORS.ok : run.state === "failed" ? COLORS.failed : COLORS.pending;
      svg.append(el("svg:rect", { x: i * 10 + 1, y: 8, width: 8, height: 32, fill: color },
        el("svg:title", {}, `${run.run_id}: ${run.state}`)));
    });
    return svg;
  }
  const max = Math.max(1, ...trend.map(r => r.ok + r.failed + r.skipped + r.pending));
  const width = 300 / Math.max(trend.length, 10);
  trend.forEach((run, i) => {
    let y = 48;
    for (const outcome of ["ok", "pending", "skipped", "failed"]) {
      const h = (run[outcome] / max) * 46;
      if (h <= 0) continue;
      y -= h;
      svg.append(el("svg:rect", { x: i * width + 1, y: y, width: width - 2, height: h, fill: COLORS[outcome] },
        el("svg:title", {}, `${run.run_id}: ${outcome} ${run[outcome]}`)));
    }
  });
  return svg;
}

function count(label, value, cls, key) {
  return el("div", { class: "count " + (cls || ""), "data-count": key }, el("b", {}, value ?? 0), label);
}

function actionButtons(card) {
  const allowed = card.can_trigger;
  return el("div", { class: "actions" }, card.actions.map(action => el("button", {
    "data-action": action, disabled: !allowed,
    title: allowed ? "" : "You may not trigger runs of " + card.dag_id,
    onclick: () => trigger(card, action),
  }, ACTION_LABELS[action] || action)));
}

function pausedLine(card) {
  if (!card.paused) return null;
  return el("div", { class: "paused", "data-testid": "paused" },
    el("b", {}, "Paused in Airflow"), ": runs wait until the DAG is unpaused. ",
    el("button", {
      "data-action": "unpause", disabled: !card.can_unpause,
      title: card.can_unpause ? `Unpause ${card.dag_id} (Airflow's API, as you)` : `You may not edit ${card.dag_id}: ask someone who may to unpause it`,
      onclick: () => unpauseCard(card),
    }, "Unpause"));
}

async function unpauseCard(card, then = null) {
  try {
    await unpause(card.dag_id);
  } catch (error) {
    say(`Unpause ${card.dag_id}: ${error.message}`, true);
    return;
  }
  say(`${card.dag_id} is unpaused.`);
  await loadOverview().catch(error => say(error.message, true));
  if (then) await then();
}

function renderCard(card) {
  const run = card.last_run;
  const c = card.counts || {};
  const head = el("h2", {}, el("a", { href: "#" + card.key, onclick: e => { e.preventDefault(); openSync(card.key); } }, card.title));
  const runLine = el("div", { class: "run" }, "Last run: ",
    run ? [link(run.url, when(run.run_after)), " — ", el("span", { class: "state-" + run.state, "data-testid": "run-state" }, run.state || "?")] : "none yet");
  const node = el("article", { class: "card", "data-sync": card.key }, head, runLine, pausedLine(card));
  if (card.kind === "engagement") {
    node.append(el("div", { class: "counts" },
      count("lists", c.lists, "", "lists"), count("campaigns", c.campaigns, "", "campaigns"),
      count("unsubscribes", c.unsubscribes, "", "unsubscribes"), count("refused records", c.rejected, "failed", "rejected")));
  } else {
    node.append(el("div", { class: "counts" },
      count("synced", c.synced, "ok", "synced"), count("pending", c.pending, "pending", "pending"),
      count("failed", c.failed, "failed", "failed"), count("skipped", c.skipped, "", "skipped"),
      count("quarantined", c.quarantined, "", "quarantined"),
      ...(card.kind === "audience" ? [count("archived", c.archived, "", "archived"), count("cleaned", c.cleaned, "", "cleaned"),
        count("unsubscribed", c.unsubscribed, "", "unsubscribed")] : [])));
    const reasons = Object.entries(c.skipped_by_reason || {});
    if (reasons.length) node.append(el("div", { class: "reasons" }, "Skipped: " + reasons.map(([r, n]) => `${r} ${n}`).join(" · ")));
  }
  node.append(trendChart(card.trend || []), actionButtons(card));
  return node;
}

async function loadOverview() {
  const data = await api("syncs");
  const box = document.getElementById("overview");
  box.replaceChildren(...data.syncs.map(renderCard));
  return data;
}

async function trigger(card, action) {
  const label = ACTION_LABELS[action] || action;
  if (action === "sync_all" && !confirm(`Resend every ${card.title.toLowerCase()} record to Mailchimp?`)) return;
  try {
    const result = await api(`syncs/${encodeURIComponent(card.key)}/actions/${encodeURIComponent(action)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
    });
    say(`${label}: run ${result.run.run_id} of ${result.dag_id} created.`);
    document.body.dataset.lastRun = result.run.run_id;
  } catch (error) {
    if (error.status === 409 && error.body && error.body.paused) askToUnpause(card, action, label, error.body);
    else say(`${label}: ${error.message}`, true);
  }
}

// A paused DAG's run would sit queued: say so, and offer to unpause it first (when the user may).
function askToUnpause(card, action, label, answer) {
  const box = document.getElementById("message");
  const why = `${label}: ${card.dag_id} is paused in Airflow, so a run would wait until it is unpaused. `;
  const buttons = answer.can_unpause
    ? [el("button", { "data-testid": "unpause-and-run", onclick: () => unpauseCard(card, () => trigger(card, action)) },
        `Unpause and ${label.toLowerCase()}`), " ",
       el("button", { onclick: () => say("") }, "Cancel")]
    : ["You may not unpause it: ask someone who may edit the DAG."];
  box.replaceChildren(why, ...buttons);
  box.className = "paused";
  box.hidden = false;
}

// ------------------------------------------------------------------------------------------------
// one sync: tabs
// ------------------------------------------------------------------------------------------------
const state = { key: null, tab: "failed", reason: null, cursors: [null] };

async function openSync(key, tab = "failed") {
  Object.assign(state, { key, tab, reason: null, cursors: [null] });
  location.hash = key;
  show("detail");
  await loadTab();
}

function tabsFor(key) {
  return TABS.filter(([tab]) => key === "audience" || (tab !== "archived" && tab !== "unsubscribed"));
}

async function loadTab() {
  const box = document.getElementById("detail");
  const page = state.cursors[state.cursors.length - 1];
  const params = new URLSearchParams({ tab: state.tab, limit: "50" });
  if (state.reason !== null) params.set("reason", state.reason);
  if (page) params.set("cursor", page);
  let data;
  try {
    data = await api(`syncs/${encodeURIComponent(state.key)}/records?` + params.toString());
  } catch (error) {
    say(error.message, true);
    return;
  }
  const back = el("button", { onclick: () => { location.hash = ""; show("overview"); } }, "← All syncs");
  const tabs = el("div", { class: "tabs", role: "tablist" }, tabsFor(state.key).map(([tab, label]) => el("button", {
    role: "tab", "data-tab": tab, "aria-pressed": String(tab === state.tab),
    onclick: () => { Object.assign(state, { tab, reason: null, cursors: [null] }); loadTab(); },
  }, label)));
  const filters = el("div", { class: "filters" }, "Reason: ",
    el("button", { class: "chip", "aria-pressed": String(state.reason === null), onclick: () => filter(null) }, `all (${data.total})`),
    Object.entries(data.reasons).map(([reason, n]) => el("button", {
      class: "chip", "data-reason": reason, "aria-pressed": String(state.reason === reason), onclick: () => filter(reason),
    }, `${reason} (${n})`)));
  const showRun = data.run_id ? el("div", { class: "run" }, "Run ", el("code", {}, data.run_id)) : null;
  const table = el("table", { "data-testid": "records" },
    el("thead", {}, el("tr", {}, ["Record", "Reason", "HTTP", "Error", "Field errors", "Batch", "Email", "Log"].map(h => el("th", {}, h)))),
    el("tbody", {}, data.rows.map(row => el("tr", { "data-record": row.record_id },
      el("td", {}, el("code", {}, row.record_id), row.operation ? ` (${row.operation})` : ""),
      el("td", { "data-col": "reason" }, row.reason ?? ""),
      el("td", {}, row.http_status ?? ""),
      el("td", { class: "detail" }, row.error_title ? el("b", {}, row.error_title + " ") : "", row.error_detail ?? ""),
      el("td", { class: "detail" }, fieldErrors(row.field_errors)),
      el("td", {}, row.batch_id ? el("code", {}, row.batch_id) : ""),
      el("td", { "data-col": "email" }, row.email ?? ""),
      el("td", {}, row.log_url ? link(row.log_url, "log") : "")))));
  const pager = el("div", { class: "filters" },
    el("button", { disabled: state.cursors.length < 2, onclick: () => { state.cursors.pop(); loadTab(); } }, "← Previous"),
    `Page ${state.cursors.length}`,
    el("button", { disabled: !data.next_cursor, "data-testid": "next", onclick: () => { state.cursors.push(data.next_cursor); loadTab(); } }, "Next →"));
  const title = el("h2", {}, (window.__titles && window.__titles[state.key]) || state.key);
  box.replaceChildren(back, title, tabs, showRun, filters,
    data.rows.length ? table : el("p", { "data-testid": "empty" }, "Nothing here."), pager);
}

function fieldErrors(value) {
  if (!value) return "";
  if (Array.isArray(value)) return value.map(e => `${e.field ?? ""}: ${e.message ?? ""}`).join("; ");
  return typeof value === "string" ? value : JSON.stringify(value);
}

function filter(reason) {
  Object.assign(state, { reason, cursors: [null] });
  loadTab();
}

// ------------------------------------------------------------------------------------------------
// campaigns
// ------------------------------------------------------------------------------------------------
const SERIES = [["sends", "#64748b"], ["opens", "#2563eb"], ["unique_opens", "#0891b2"], ["clicks", "#16a34a"],
  ["unsubscribed", "#dc2626"], ["bounces", "#a16207"]];

function lineChart(points) {
  const W = 900, H = 260, L = 50, B = 30;
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, "data-testid": "campaign-chart" });
  const max = Math.max(1, ...points.flatMap(p => SERIES.map(([k]) => p[k])));
  const x = i => L + (points.length < 2 ? (W - L - 10) / 2 : (i * (W - L - 10)) / (points.length - 1));
  const y = v => H - B - (v / max) * (H - B - 10);
  svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#9ca3af" }));
  svg.append(el("svg:text", { x: 4, y: 16, "font-size": 11, fill: "#6b7280" }, String(max)));
  svg.append(el("svg:text", { x: 4, y: H - B, "font-size": 11, fill: "#6b7280" }, "0"));
  points.forEach((p, i) => {
    if (points.length <= 12 || i % Math.ceil(points.length / 12) === 0)
      svg.append(el("svg:text", { x: x(i) - 30, y: H - 10, "font-size": 11, fill: "#6b7280" }, p.day));
  });
  for (const [key, color] of SERIES) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    svg.append(el("svg:path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": key }));
    points.forEach((p, i) => svg.append(el("svg:circle", { cx: x(i), cy: y(p[key]), r: 3, fill: color },
      el("svg:title", {}, `${p.day} ${key}: ${p[key]}`))));
  }
  return svg;
}

async function loadCampaigns() {
  const box = document.getElementById("campaigns");
  let data;
  try {
    data = await api("campaigns");
  } catch (error) {
    box.replaceChildren(el("p", {}, error.message));
    return;
  }
  const legend = el("div", { class: "legend" }, SERIES.map(([k, c]) => el("span", { style: `color:${c}` }, "● " + k.replace("_", " "))));
  const table = el("table", { "data-testid": "campaign-table" },
    el("thead", {}, el("tr", {}, ["Campaign", "Sent", "Sends", "Opens", "Unique opens", "Clicks", "Unsubscribes", "Bounces"].map(h => el("th", {}, h)))),
    el("tbody", {}, data.campaigns.map(c => el("tr", { "data-campaign": c.campaign_id },
      el("td", {}, c.title || c.campaign_id), el("td", {}, when(c.send_time)),
      ["sends", "opens", "unique_opens", "clicks", "unsubscribed", "bounces"].map(k => el("td", { "data-col": k }, c[k]))))));
  box.replaceChildren(el("h2", {}, "Campaigns"), data.series.length ? lineChart(data.series) : el("p", {}, "No sent campaign pulled yet."), legend, table);
}

// ------------------------------------------------------------------------------------------------
// one batch (a task's "Mailchimp batch" link opens #batch/<id>)
// ------------------------------------------------------------------------------------------------
async function loadBatch(batchId) {
  const box = document.getElementById("batch");
  let data;
  try {
    data = await api("batches/" + encodeURIComponent(batchId));
  } catch (error) {
    box.replaceChildren(el("h2", {}, "Mailchimp batch ", el("code", {}, batchId)), el("p", { class: "error" }, error.message));
    return;
  }
  const b = data.batch;
  const facts = [
    ["Status", el("span", { class: "state-" + (b.status === "finished" ? "success" : b.status), "data-testid": "batch-status" }, b.status || "?")],
    ["Operations", `${b.finished_operations ?? "?"} of ${b.total_operations ?? b.operation_count ?? "?"} finished, ${b.errored_operations ?? 0} errored`],
    ["Task", [el("code", {}, `${b.dag_id}.${b.task_id}`), " — ", link(b.log_url, "log"), " · ", link(b.run_url, "run " + b.run_id)]],
    ["Entity", b.entity || "—"],
    ["Submitted", when(b.submitted_at)], ["Completed", when(b.completed_at)],
    ["Results applied", b.applied_at ? when(b.applied_at) : "not yet"],
  ];
  if (b.error) facts.push(["Error", b.error]);
  const summary = el("table", { class: "facts" }, el("tbody", {}, facts.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  const outcomes = [];
  for (const [entity, byOutcome] of Object.entries(data.counts)) {
    for (const [outcome, reasons] of Object.entries(byOutcome)) {
      for (const [reason, n] of Object.entries(reasons)) outcomes.push(el("tr", { "data-outcome": outcome },
        el("td", {}, entity), el("td", { class: "state-" + (outcome === "ok" ? "success" : outcome) }, outcome), el("td", {}, reason), el("td", { "data-col": "count" }, n)));
    }
  }
  const counts = outcomes.length
    ? el("table", { "data-testid": "batch-counts" }, el("thead", {}, el("tr", {}, ["Entity", "Outcome", "Reason", "Records"].map(h => el("th", {}, h)))), el("tbody", {}, outcomes))
    : el("p", {}, "No per-record results recorded for this batch (its task keeps none, or they are not applied yet).");
  const problems = data.rows.length ? [el("h3", {}, "Records that did not go through"), el("table", { "data-testid": "batch-records" },
    el("thead", {}, el("tr", {}, ["Record", "Email", "Outcome", "Reason", "HTTP", "Error", "Field errors"].map(h => el("th", {}, h)))),
    el("tbody", {}, data.rows.map(row => el("tr", { "data-record": row.record_id },
      el("td", {}, el("code", {}, row.record_id), ` (${row.entity} ${row.operation})`), el("td", {}, row.email ?? ""),
      el("td", {}, row.outcome), el("td", {}, row.reason ?? ""), el("td", {}, row.http_status ?? ""),
      el("td", { class: "detail" }, row.error_title ? el("b", {}, row.error_title + " ") : "", row.error_detail ?? ""),
      el("td", { class: "detail" }, fieldErrors(row.field_errors))))))] : [];
  box.replaceChildren(el("h2", {}, "Mailchimp batch ", el("code", {}, b.batch_id)), summary, el("h3", {}, "Results"), counts, ...problems);
}

// ------------------------------------------------------------------------------------------------
function show(view) {
  for (const id of ["overview", "detail", "campaigns", "batch"]) document.getElementById(id).hidden = id !== view;
  document.querySelectorAll("button.view").forEach(b => b.setAttribute("aria-pressed", String(b.dataset.view === (view === "detail" ? "overview" : view))));
  if (view === "overview") loadOverview().catch(error => say(error.message, true));
  if (view === "campaigns") loadCampaigns();
}

async function main() {
  try {
    me = await api("me");
    document.getElementById("user").textContent = "Signed in as " + me.user;
  } catch (error) {
    say(error.message, true);
    return;
  }
  document.querySelectorAll("button.view").forEach(b => b.addEventListener("click", () => { location.hash = b.dataset.view === "campaigns" ? "campaigns" : ""; show(b.dataset.view); }));
  const data = await loadOverview().catch(error => { say(error.message, true); return null; });
  window.__titles = Object.fromEntries((data ? data.syncs : []).map(c => [c.key, c.title]));
  const hash = location.hash.slice(1);
  if (hash.startsWith("batch/")) {
    show("batch");
    await loadBatch(decodeURIComponent(hash.slice(6)));
  } else if (hash === "campaigns") show("campaigns");
  else if (hash && window.__titles[hash]) openSync(hash);
  document.body.dataset.ready = "true";
}

main();
