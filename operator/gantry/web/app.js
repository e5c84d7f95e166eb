// The Gantry web view: polls /api/state and draws it. No framework, nothing from the internet;
// every value goes in as text (never as HTML), so nothing in a Release can script this page.
"use strict";

const POLL_MS = 2000;
// The plugin's verbs (as in each command) and the decision each one makes.
const ACTIONS = {
  approve: "Approve",
  rollback: "Rollback",
  "fail-forward": "FailForward",
  emergency: "Emergency",
  "lift-quarantine": "LiftQuarantine",
  "override-freeze": "OverrideFreeze",
};
let viewer = { canDecide: false, user: null };
let pending = null; // the decision the dialog is about

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function add(parent, ...children) {
  for (const child of children) if (child) parent.appendChild(child);
  return parent;
}

function age(iso) {
  if (!iso) return "-";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function shortDigest(digests) {
  if (!digests || !digests.length) return "-";
  return digests.map((d) => d.replace("sha256:", "").slice(0, 12)).join(", ");
}

function stageCard(environment) {
  const card = el("section", "stage");
  card.dataset.environment = environment.environment;
  add(card, el("div", "env", environment.environment));
  add(card, el("div", "version", environment.version || "-"));
  const line = el("div", "detail");
  add(line, el("code", "digest", shortDigest(environment.digests)), document.createTextNode(" "));
  add(line, el("span", "since", environment.since ? `since ${age(environment.since)}` : ""));
  add(card, line);
  if (environment.release) add(card, el("div", "quiet release", environment.release));
  const health = environment.healthy === undefined ? "unknown" : environment.healthy ? "healthy" : "rolling";
  const badge = el("span", `badge ${health}`, health === "rolling" ? environment.rollout || "rolling out" : health);
  add(card, badge);
  if (environment.frozen) add(card, document.createTextNode(" "), el("span", "badge frozen", `frozen: ${environment.frozen}`));
  if (environment.lockHolder || (environment.queue && environment.queue.length)) {
    const lock = el("div", "lock");
    add(lock, el("span", "quiet", "lock: "), el("span", "lock-holder", environment.lockHolder || "free"));
    if (environment.queue && environment.queue.length) add(lock, el("span", "queue", ` · queue: ${environment.queue.join(", ")}`));
    add(card, lock);
  }
  return card;
}

function bakeChart(bake) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bake");
  svg.setAttribute("viewBox", "0 0 300 100");
  svg.setAttribute("role", "img");
  const points = bake.evaluations.filter((e) => typeof e.errorRate === "number");
  const top = Math.max(bake.threshold * 2, ...points.map((p) => p.errorRate), 0.01);
  const y = (rate) => 90 - (rate / top) * 80;
  const x = (i) => 20 + (points.length > 1 ? (i * 270) / (points.length - 1) : 135);
  svg.setAttribute("aria-label", `${bake.stage} bake: ${points.length} evaluations against a threshold of ${(bake.threshold * 100).toFixed(1)}%`);
  const line = document.createElementNS(ns, "line");
  line.setAttribute("class", "threshold");
  for (const [k, v] of [["x1", 20], ["x2", 290], ["y1", y(bake.threshold)], ["y2", y(bake.threshold)]]) line.setAttribute(k, v);
  svg.appendChild(line);
  const labels = [
    [22, y(bake.threshold) - 3, `threshold ${(bake.threshold * 100).toFixed(1)}%`],
    [2, 98, "0%"],
    [2, 12, `${(top * 100).toFixed(0)}%`],
    [200, 98, `error rate, ${points.length} evaluations`],
  ];
  for (const [lx, ly, text] of labels) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", lx);
    label.setAttribute("y", ly);
    label.textContent = text;
    svg.appendChild(label);
  }
  points.forEach((p, i) => {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("class", `point ${p.verdict || ""}`);
    dot.setAttribute("cx", x(i));
    dot.setAttribute("cy", y(p.errorRate));
    dot.setAttribute("r", 3.5);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${p.time}: ${(p.errorRate * 100).toFixed(2)}% (${p.verdict})`;
    dot.appendChild(title);
    svg.appendChild(dot);
  });
  return svg;
}

function commandList(namespace, release, commands) {
  const list = el("ul", "commands");
  for (const command of commands || []) {
    const item = el("li");
    const code = el("code", null, command);
    const copy = el("button", null, "copy");
    copy.type = "button";
    copy.addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(command));
    add(item, code, copy);
    const verb = command.split(/\s+/)[4];
    if (viewer.canDecide && ACTIONS[verb]) {
      const act = el("button", "act", ACTIONS[verb]);
      act.type = "button";
      act.addEventListener("click", () => openDecision(namespace, release, ACTIONS[verb], command));
      add(item, act);
    }
    list.appendChild(item);
  }
  return list;
}

function flightTable(application) {
  const wrap = el("div", "table-wrap");
  const table = el("table", "flight");
  const head = el("tr");
  for (const h of ["Release", "Version", "Stage", "Phase", "Step", "Age", "What now"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (const release of application.releases) {
    const row = el("tr");
    row.dataset.release = release.release;
    for (const value of [release.release, release.version, release.stage, release.phase, release.step]) row.appendChild(el("td", null, value || "-"));
    row.appendChild(el("td", null, age(release.createdAt)));
    const now = el("td");
    add(now, el("div", "message", release.message || ""));
    if (release.bake) add(now, bakeChart(release.bake));
    const said = release.commands || [];
    const offered = [...said, ...(release.actions || []).filter((c) => !said.includes(c))];
    if (offered.length) add(now, commandList(application.namespace, release.release, offered));
    row.appendChild(now);
    table.appendChild(row);
  }
  return add(wrap, table);
}

function ledgerTable(application) {
  const wrap = el("div", "table-wrap");
  const table = el("table", "ledger");
  const head = el("tr");
  for (const h of ["Version", "Release", "Result", "Deployed", "Decided by", "Why"]) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (const entry of [...application.production].reverse()) {
    const row = el("tr");
    const values = [entry.version, entry.release, entry.result, entry.deployedAt ? `${age(entry.deployedAt)} ago` : "-", entry.decidedBy, entry.reason];
    for (const value of values) row.appendChild(el("td", null, value || "-"));
    table.appendChild(row);
  }
  return add(wrap, table);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function doraLine(d) {
  const line = el("dl", "dora");
  const rate = d.changeFailureRatio === null ? "-" : `${Math.round(d.changeFailureRatio * 100)} %`;
  const items = [
    ["deploys / day", d.deployments ? d.deploymentsPerDay.toFixed(2) : "-"],
    ["lead time", duration(d.leadTimeSeconds)],
    ["change failure rate", rate],
    ["time to restore", duration(d.timeToRestoreSeconds)],
  ];
  for (const [term, value] of items) {
    const item = el("div");
    add(item, el("dt", null, term), el("dd", null, value));
    line.appendChild(item);
  }
  line.title = `DORA, production, since ${d.since || "-"} (${d.deployments} deploys)`;
  return line;
}

function applicationCard(application) {
  const card = el("article", "application");
  card.dataset.application = application.application;
  add(card, el("h2", null, `${application.application} `), el("span", "quiet", `${application.namespace}/${application.pipeline}`));
  if (application.dora) add(card, doraLine(application.dora));
  const stages = el("div", "stages");
  for (const environment of application.environments) stages.appendChild(stageCard(environment));
  add(card, stages);
  if (application.releases.length) add(card, el("h3", null, "In flight"), flightTable(application));
  if (application.production.length) add(card, el("h3", null, "Production ledger"), ledgerTable(application));
  if (application.quarantine.length) {
    add(card, el("h3", null, "Quarantined digests"));
    const list = el("ul", "quarantine");
    for (const q of application.quarantine) list.appendChild(el("li", null, `${shortDigest([q.digest])} (${q.version}, ${q.release}): ${q.reason}`));
    add(card, list);
  }
  return card;
}

function render(doc) {
  viewer = doc.viewer || viewer;
  document.getElementById("viewer").textContent = viewer.user ? `signed in as ${viewer.user}` : "read-only";
  const main = document.getElementById("applications");
  main.replaceChildren(...(doc.applications.length ? doc.applications.map(applicationCard) : [el("p", "quiet", "No Pipelines here.")]));
  document.getElementById("updated").textContent = `updated ${new Date(doc.generatedAt).toLocaleTimeString()}`;
}

function scope() {
  const namespace = new URLSearchParams(location.search).get("namespace");
  document.getElementById("scope").textContent = namespace ? `namespace ${namespace}` : "every namespace";
  return namespace ? `?namespace=${encodeURIComponent(namespace)}` : "";
}

async function poll() {
  const problem = document.getElementById("problem");
  try {
    const response = await fetch(`/api/state${scope()}`, { headers: { Accept: "application/json" } });
    const doc = await response.json();
    if (!response.ok) throw new Error(doc.message || response.statusText);
    if (!document.getElementById("decide").open) render(doc);
    problem.hidden = true;
  } catch (error) {
    problem.textContent = `Cannot read the state: ${error.message}`;
    problem.hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

function openDecision(namespace, release, action, command) {
  pending = { namespace, release, action };
  document.getElementById("decide-title").textContent = `${action} ${namespace}/${release}`;
  document.getElementById("decide-command").textContent = command;
  document.getElementById("decide-answer").textContent = "";
  document.getElementById("decide-reason").value = "";
  document.getElementById("decide").showModal();
}

async function sendDecision(event) {
  if (event.submitter && event.submitter.value !== "go") return;
  event.preventDefault();
  const answer = document.getElementById("decide-answer");
  const body = { ...pending, reason: document.getElementById("decide-reason").value };
  const response = await fetch("/api/decisions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const said = await response.json();
  answer.textContent = said.message;
  if (response.ok) setTimeout(() => document.getElementById("decide").close(), 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("decide-form").addEventListener("submit", sendDecision);
  poll();
});
