// Boomerang ops dashboard: fills the page from the JSON routes of this service (every
// call carries the session cookie), and refreshes every REFRESH_MS. No framework, no build.
"use strict";

const REFRESH_MS = 10000;
const API = "/dashboard/api";

const KPIS = [
  ["returns_started", "Returns started", "count"],
  ["orders_delivered", "Orders delivered", "count"],
  ["return_rate", "Return rate", "ratio"],
  ["refund_request_to_money.p50_s", "Request → money, p50", "seconds"],
  ["refund_request_to_money.p95_s", "Request → money, p95", "seconds"],
  ["refund_pickup_to_money.p50_s", "Pickup → money, p50", "seconds"],
  ["refund_pickup_to_money.p95_s", "Pickup → money, p95", "seconds"],
  ["first_attempt_pickup_success", "First-attempt pickup success", "ratio"],
  ["compensation_rate", "Compensation rate", "ratio"],
  ["inspection_backlog", "Inspection backlog", "count"],
  ["inspection_oldest_age_s", "Oldest uninspected", "seconds"],
  ["risk_holds", "Risk holds", "count"],
  ["review_queue", "Waiting for a reviewer", "count"],
  ["review_overdue", "Reviews overdue", "count"],
  ["review_time.p50_s", "Review time, p50", "seconds"],
  ["settlement_match_ratio", "Reconciliation match rate", "ratio"],
  ["cases_open", "Support cases open", "count"],
  ["cases_overdue", "Support cases overdue", "count"],
  ["notifications_sent", "Notifications sent", "count"],
  ["notifications_given_up", "Notifications given up", "count"],
  ["disputes_opened", "Disputes opened", "count"],
];

function element(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) made.setAttribute(name, String(value));
  }
  for (const child of children) {
    made.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return made;
}

function valueAt(figures, path) {
  return path.split(".").reduce((at, key) => (at == null ? null : at[key]), figures);
}

function shown(value, kind) {
  if (value === null || value === undefined) return "–";
  if (kind === "ratio") return `${(value * 100).toFixed(1)} %`;
  if (kind === "seconds") {
    if (value < 120) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
    if (value < 7200) return `${(value / 60).toFixed(1)} min`;
    if (value < 172800) return `${(value / 3600).toFixed(1)} h`;
    return `${(value / 86400).toFixed(1)} d`;
  }
  return Number(value).toLocaleString("en");
}

async function getJson(path) {
  const response = await fetch(API + path, { credentials: "same-origin" });
  if (response.status === 401) {
    window.location.assign("/dashboard");
    throw new Error("signed out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

function table(caption, headings, rows, numeric = []) {
  const head = element("tr", {}, ...headings.map((h, i) =>
    element("th", { scope: "col", class: numeric.includes(i) ? "number" : null }, h)));
  const body = rows.map((row) => element("tr", {}, ...row.map((cell, i) =>
    element("td", { class: numeric.includes(i) ? "number" : null }, cell))));
  return element("table", {}, element("caption", { class: "muted" }, caption),
    element("thead", {}, head), element("tbody", {}, ...body));
}

function barChart(figure, bars, describe) {
  // an SVG bar chart named by its figure's caption, and the same figures as a table
  const holder = figure.querySelector(".chart");
  holder.replaceChildren();
  const width = 460, rowHeight = 22, labelWidth = 170;
  const largest = Math.max(1, ...bars.map((b) => b.value));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-labelledby", figure.querySelector("figcaption").id);
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(1, bars.length) * rowHeight + 4}`);
  svg.setAttribute("width", "100%");
  bars.forEach((bar, i) => {
    const y = i * rowHeight + 2;
    const label = document.createElementNS(svg.namespaceURI, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(y + 15));
    label.textContent = bar.label;
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    rect.setAttribute("class", "bar");
    rect.setAttribute("x", String(labelWidth));
    rect.setAttribute("y", String(y + 3));
    rect.setAttribute("height", "14");
    rect.setAttribute("width", String(((width - labelWidth - 60) * bar.value) / largest));
    const value = document.createElementNS(svg.namespaceURI, "text");
    value.setAttribute("x", String(labelWidth + ((width - labelWidth - 60) * bar.value) / largest + 4));
    value.setAttribute("y", String(y + 15));
    value.textContent = describe(bar.value);
    svg.append(label, rect, value);
  });
  holder.append(svg, table("The chart's figures", ["", "value"],
    bars.map((b) => [b.label, describe(b.value)]), [1]));
}

function refundTimeBars(timing) {
  const bars = [];
  let below = 0, lower = 0;
  for (const bucket of timing.buckets || []) {
    const upper = bucket.le === "+Inf" ? "∞" : shown(bucket.le, "seconds");
    bars.push({ label: `${shown(lower, "seconds")} – ${upper}`, value: bucket.count - below });
    below = bucket.count;
    lower = bucket.le;
  }
  return bars.filter((bar) => bar.value > 0);
}

function renderKpis(figures) {
  const list = document.getElementById("kpis");
  list.replaceChildren(...KPIS.map(([path, label, kind]) => {
    const value = valueAt(figures, path);
    return element("div", {}, element("dt", {}, label),
      element("dd", { "data-kpi": path, "data-value": JSON.stringify(value) }, shown(value, kind)));
  }));
  barChart(document.getElementById("chart-refund-time"),
    refundTimeBars(figures.refund_request_to_money), (v) => `${v}`);
  barChart(document.getElementById("chart-outcomes"),
    Object.entries(figures.returns_finished).map(([label, value]) => ({ label, value })),
    (v) => `${v}`);
  barChart(document.getElementById("chart-refund-failures"),
    Object.entries(figures.refund_attempts).map(([label, a]) => ({ label, value: a.failure_rate || 0 })),
    (v) => shown(v, "ratio"));
  const down = Object.entries(figures.sources).filter(([, state]) => state !== "ok");
  document.getElementById("scraped-at").textContent =
    `Figures of ${Object.keys(figures.sources).length} processes at ` +
    `${new Date(figures.scraped_at_ms).toLocaleTimeString("en-GB")}` +
    (down.length ? `; not answering: ${down.map(([name]) => name).join(", ")}` : "");
  document.getElementById("kpis").dataset.scrapedAt = figures.scraped_at_ms;
}

function renderReviews(queue) {
  const holder = document.getElementById("reviews");
  if (!queue.cases.length) {
    holder.replaceChildren(element("p", {}, "No return waits for a reviewer."));
    return;
  }
  holder.replaceChildren(table(`${queue.cases.length} cases waiting`,
    ["Return", "Status", "Outcome", "Score", "Rules", "Deadline"],
    queue.cases.map((c) => [c.return_id, c.status, c.outcome, c.score, (c.rules || []).join(", "),
      c.review_deadline_at ? new Date(c.review_deadline_at).toISOString() : "–"]), [3]));
}

function renderDeadLetters(letters) {
  const rows = Object.entries(letters.topics).map(([topic, count]) => [topic, count]);
  document.getElementById("dead-letters").replaceChildren(
    element("p", {}, `${letters.total} records on the dead-letter topics.`),
    table("Records per dead-letter topic", ["Topic", "Records"], rows, [1]));
}

function renderLag(lag) {
  document.getElementById("lag").replaceChildren(table("Per service (consumer group)",
    ["Service", "State", "Members", "Records behind", "Oldest unprocessed"],
    lag.groups.map((g) => [g.service, g.state, g.members, g.lag,
      g.oldest_unprocessed_age_s == null ? "–" : shown(g.oldest_unprocessed_age_s, "seconds")]),
    [2, 3]));
}

function renderTimeline(timeline) {
  const holder = document.getElementById("timeline");
  const request = timeline.request || {};
  const facts = element("p", {}, `${timeline.return_id}: ${timeline.status}` +
    (timeline.terminal ? " (finished)" : "") +
    ` · order ${request.order_ref} · ${request.market} · ${request.category}` +
    ` · ${request.reason_code} · paid by ${request.payment_method}`);
  const entries = timeline.entries.map((entry) => {
    const at = entry.at ? new Date(entry.at) : null;
    return element("li", { "data-kind": entry.kind, "data-title": entry.title },
      element("time", { datetime: at ? at.toISOString() : null },
        at ? at.toISOString().replace("T", " ").replace("Z", "") : "–"),
      element("span", { class: "kind" }, entry.kind), " ",
      element("strong", {}, entry.title), " ", element("span", {}, entry.detail || ""));
  });
  holder.replaceChildren(facts, element("ol", { class: "timeline", id: "timeline-entries" }, ...entries));
}

async function showTimeline(returnId) {
  const holder = document.getElementById("timeline");
  holder.replaceChildren(element("p", {}, `Looking up ${returnId}…`));
  try {
    renderTimeline(await getJson(`/returns/${encodeURIComponent(returnId)}`));
  } catch (error) {
    holder.replaceChildren(element("p", { class: "error", role: "alert" }, error.message));
  }
}

async function refresh() {
  const status = document.getElementById("status");
  const parts = [
    ["KPIs", "/kpis", renderKpis],
    ["review queue", "/reviews", renderReviews],
    ["dead letters", "/dead-letters", renderDeadLetters],
    ["consumer lag", "/lag", renderLag],
  ];
  const failed = [];
  await Promise.all(parts.map(async ([name, path, render]) => {
    try {
      render(await getJson(path));
    } catch (error) {
      failed.push(`${name}: ${error.message}`);
    }
  }));
  status.textContent = failed.length
    ? `Some figures could not be read: ${failed.join("; ")}`
    : `Figures current as of ${new Date().toLocaleTimeString("en-GB")}.`;
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("refresh").addEventListener("click", refresh);
  const form = document.getElementById("timeline-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const returnId = form.return_id.value.trim();
    if (!returnId) return;
    const url = new URL(window.location.href);
    url.searchParams.set("return_id", returnId);
    window.history.replaceState(null, "", url);
    showTimeline(returnId);
  });
  if (form.return_id.value.trim()) showTimeline(form.return_id.value.trim());
  refresh();
  window.setInterval(refresh, REFRESH_MS);
});
