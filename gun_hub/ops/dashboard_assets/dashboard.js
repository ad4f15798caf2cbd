// gun-hub operations dashboard: polls /api/dashboard and redraws. Values are written with
// textContent only, never as markup.
"use strict";

const REFRESH_MS = 1000;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function badge(td, text, kind) {
  td.textContent = "";
  const span = document.createElement("span");
  span.className = "badge badge-" + kind;
  span.textContent = text;
  td.appendChild(span);
}

function fill(tableId, rows, draw) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    draw(tr, item);
    body.appendChild(tr);
  }
}

// One adapter replica: "2: open, 40 pending", "1: closed, 0 pending, no heartbeat for 20 s".
function replica(r) {
  const name = r.replica || "(unnamed)";
  const stale = r.stale ? ", no heartbeat for " + r.heartbeat_age_s + " s" : "";
  return name + ": " + r.circuit + ", " + r.pending_operations + " pending" + stale;
}

// Times as the hub gives them and counts its days: UTC, and labelled so (an officer's
// browser may be elsewhere).
function utcTime(iso) {
  const when = new Date(iso);
  return Number.isNaN(when.getTime()) ? "–" : when.toISOString().slice(11, 19) + " UTC";
}

// A duration in its two largest units: "5 d 6 h", "42 min".
function duration(seconds) {
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const parts = [];
  let left = Math.max(0, Math.round(seconds));
  for (const [name, size] of units) {
    if (left >= size || (name === "s" && parts.length === 0)) {
      parts.push(Math.floor(left / size) + " " + name);
      left %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

// The group's oldest unread record, and what its topic's retention leaves of it.
function unread(g) {
  if (g.oldest_unread_age_s == null) return "–";
  const left = g.retention_headroom_s == null ? "" : " (" + duration(g.retention_headroom_s) + " left)";
  return duration(g.oldest_unread_age_s) + left;
}

function render(data) {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  set("updated-at", utcTime(data.at));
  set("decisions-total", String(data.decisions_total ?? "–"));
  set("throughput", String(data.throughput_per_s ?? "–"));
  set("dead-letters-total", String(data.dead_letters ? data.dead_letters.total : "–"));
  const groups = data.lag ? data.lag.groups : [];
  set("lag-total", data.lag ? String(groups.reduce((sum, g) => sum + g.lag, 0)) : "–");

  const outcomes = Object.entries(data.decisions || {});
  const most = Math.max(1, ...outcomes.map(([, n]) => n));
  fill("outcomes", outcomes, (tr, [outcome, count]) => {
    tr.dataset.outcome = outcome;
    cell(tr, outcome);
    cell(tr, String(count), "num");
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.round((100 * count) / most) + "%";
    cell(tr, "").appendChild(bar);
  });
  fill("lag", groups, (tr, g) => {
    tr.dataset.group = g.group;
    cell(tr, g.group);
    cell(tr, String(g.lag), "num");
    const trend = cell(tr, "");
    badge(trend, g.growing ? "growing" : g.lag > 0 ? "behind" : "ok",
          g.growing ? "bad" : g.lag > 0 ? "warn" : "ok");
    if (g.lost > 0) {
      // Deleted by retention before the group read them: not in its lag, gone for it.
      const lost = document.createElement("span");
      lost.className = "badge badge-bad";
      lost.textContent = g.lost + " lost to retention";
      trend.append(" ", lost);
    }
    cell(tr, unread(g), "num");
  });
  fill("partners", data.partners || [], (tr, p) => {
    tr.dataset.authority = p.authority;
    cell(tr, p.authority);
    const kind = p.stale ? "wait" : p.circuit === "closed" ? "ok" : p.circuit === "open" ? "bad" : "warn";
    badge(cell(tr, ""), p.stale ? "no heartbeat" : p.circuit, kind);
    cell(tr, String(p.pending_operations), "num");
    cell(tr, p.heartbeat_age_s + " s ago");
    // Each replica's own circuit and queue; the columns before: the worst circuit and
    // the sum over the replicas with a fresh heartbeat.
    cell(tr, (p.replicas || []).map(replica).join(" · ") || "–");
  });
  const modeKind = { enforce: "ok", advice: "warn", shadow: "wait", off: "bad" };
  fill("rollout", Object.entries(data.rollout || {}), (tr, [authority, r]) => {
    tr.dataset.authority = authority;
    cell(tr, authority);
    badge(cell(tr, ""), r.mode, modeKind[r.mode] || "warn");
    cell(tr, Object.entries(r.offices).map(([office, o]) => office + " " + o.mode).join(", ") || "–");
  });
  fill("dead-letters", data.recent_dead_letters || [], (tr, d) => {
    cell(tr, utcTime(d.at));
    cell(tr, d.kind);
    cell(tr, d.component);
    cell(tr, d.reason);
  });
}

async function refresh() {
  const status = document.getElementById("connection");
  try {
    const response = await fetch("/api/dashboard", { cache: "no-store" });
    if (response.status === 401) throw new Error("signed out");
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    status.textContent = "live";
    status.className = "badge badge-ok";
  } catch (err) {
    status.textContent = err.message === "signed out" ? "signed out: reload" : "hub unreachable";
    status.className = "badge badge-bad";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
