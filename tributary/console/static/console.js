// The Tributary console: renders a snapshot (tributary/console/snapshot.py) into the page.
// Live, snapshots arrive as Server-Sent Events; in a report (tributary/console/report.py) one snapshot,
// the demo's summary and its timeline are embedded in the page. Nothing is fetched from anywhere else.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad", "#f08c00", "#5c940d",
                 "#862e9c", "#495057"];
const METERS_PER_DEGREE = 111320;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children.flat(Infinity)) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function replace(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== undefined));
  return target;
}

function table(columns, rows, attributes) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.text ? "text" : null }, c.label)));
  const body = rows.map((row) => el("tr", row.attributes || {},
    columns.map((c) => el("td", { class: c.text ? "text" : null, "data-field": c.key }, format(row[c.key])))));
  return [head, ...body];
}

function format(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function colorOf(names, name) {
  return PALETTE[Math.max(0, names.indexOf(name)) % PALETTE.length];
}

// ------------------------------------------------------------------ fleet map

function niceLength(meters) {
  const power = Math.pow(10, Math.floor(Math.log10(meters)));
  for (const step of [5, 2, 1]) if (step * power <= meters) return step * power;
  return power;
}

function renderMap(fleet) {
  const unicorns = fleet.unicorns || [];
  const names = unicorns.map((u) => u.name);
  document.getElementById("fleet-count").textContent = unicorns.length;
  document.getElementById("fleet-note").textContent =
    `${fleet.readings || 0} readings read from the stream` + (fleet.refused ? `, ${fleet.refused} refused (poison)` : "");
  const map = replace("fleet-map");
  if (!unicorns.length) {
    map.append(svg("text", { x: 320, y: 210, "text-anchor": "middle", fill: "#6b7385" },
      "no readings yet: produce a burst"));
  } else {
    drawPositions(map, unicorns, names, { width: 640, height: 420, margin: 40, labelRoom: 70, markers: true });
  }
  // Each unicorn's trail at its own scale: on the fleet's scale a few readings' walk is a dot.
  replace("fleet-trails", unicorns.map((unicorn) => {
    const node = svg("svg", { class: "trail", viewBox: "0 0 122 100", width: 122, height: 100,
                              "data-name": unicorn.name });
    drawPositions(node, [unicorn], names, { width: 122, height: 100, margin: 14, labelRoom: 0, markers: false });
    node.append(svg("text", { x: 4, y: 12, "font-size": 10, fill: colorOf(names, unicorn.name) }, unicorn.name));
    return node;
  }));
}

function drawPositions(node, unicorns, names, view) {
  const { width, height, margin, labelRoom } = view;
  const points = unicorns.flatMap((u) => u.trail);
  const lat0 = points.reduce((s, p) => s + p.lat, 0) / points.length;
  const lon0 = points.reduce((s, p) => s + p.lon, 0) / points.length;
  const cos = Math.cos((lat0 * Math.PI) / 180);
  const xy = (p) => [(p.lon - lon0) * cos * METERS_PER_DEGREE, (p.lat - lat0) * METERS_PER_DEGREE];
  const meters = points.map(xy);
  const xs = meters.map((m) => m[0]), ys = meters.map((m) => m[1]);
  const spanX = Math.max(Math.max(...xs) - Math.min(...xs), 20);
  const spanY = Math.max(Math.max(...ys) - Math.min(...ys), 20);
  const scale = Math.min((width - 2 * margin - labelRoom) / spanX, (height - 2 * margin) / spanY);  // px per meter
  const midX = (Math.max(...xs) + Math.min(...xs)) / 2, midY = (Math.max(...ys) + Math.min(...ys)) / 2;
  const project = (p) => {
    const [x, y] = xy(p);
    return [(width - labelRoom) / 2 + (x - midX) * scale, height / 2 - (y - midY) * scale];
  };
  node.append(svg("rect", { x: 0, y: 0, width, height, fill: "#fbfcfe" }));
  for (const unicorn of unicorns) {
    const color = colorOf(names, unicorn.name);
    const path = unicorn.trail.map(project).map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    node.append(svg("polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2, "stroke-opacity": 0.6 }));
    const [x, y] = project(unicorn.latest);
    const marker = svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: view.markers ? 6 : 3.5, fill: color,
                                   stroke: "#fff", "stroke-width": view.markers ? 2 : 1 });
    if (!view.markers) { node.append(marker); continue; }
    node.append(svg("g", { class: "unicorn", "data-name": unicorn.name, "data-lat": unicorn.latest.lat,
                           "data-lon": unicorn.latest.lon, "data-time": unicorn.latest.time },
      marker,
      svg("text", { x: (x + 9).toFixed(1), y: (y + 4).toFixed(1), "font-size": 12, fill: "#1d2330" }, unicorn.name),
      svg("title", {}, `${unicorn.name} ${unicorn.latest.lat.toFixed(5)}, ${unicorn.latest.lon.toFixed(5)} at ${unicorn.latest.time}`)));
  }
  const length = niceLength((width / 4) / scale);
  const bar = length * scale, base = height - (view.markers ? 18 : 8), left = view.markers ? 16 : 6;
  node.append(svg("g", { class: "scale-bar", "data-meters": length },
    svg("line", { x1: left, y1: base, x2: left + bar, y2: base, stroke: "#1d2330", "stroke-width": 2 }),
    svg("line", { x1: left, y1: base - 5, x2: left, y2: base + 5, stroke: "#1d2330" }),
    svg("line", { x1: left + bar, y1: base - 5, x2: left + bar, y2: base + 5, stroke: "#1d2330" }),
    svg("text", { x: left + bar + 4, y: base + 4, "font-size": view.markers ? 11 : 9, fill: "#1d2330" },
      length >= 1000 ? `${length / 1000} km` : `${length} m`)));
  if (view.markers) {
    node.append(svg("text", { x: width - 12, y: 18, "text-anchor": "end", "font-size": 11, fill: "#6b7385" },
      `centre ${lat0.toFixed(4)}, ${lon0.toFixed(4)} · north up`));
  }
}

// ------------------------------------------------------------------ charts

function chart(title, windows, series, options) {
  const width = 420, height = 200, left = 46, right = 28, top = 24, bottom = 30;
  const values = series.flatMap((s) => s.points.flatMap((p) => [p.low, p.high]));
  const max = Math.max(1, ...values), min = Math.min(0, ...values);
  const x = (i) => left + (windows.length <= 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (windows.length - 1));
  const y = (v) => top + (height - top - bottom) * (1 - (v - min) / (max - min));
  const node = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, "data-chart": options.key },
    svg("text", { x: left, y: 15, "font-size": 12, "font-weight": 600 }, title));
  for (let tick = 0; tick <= 4; tick++) {
    const value = min + ((max - min) * tick) / 4;
    node.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), stroke: "#eceef3" }),
      svg("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7385" },
        value >= 100 ? value.toFixed(0) : value.toFixed(1)));
  }
  const shown = windows.length > 6 ? Math.ceil(windows.length / 6) : 1;
  windows.forEach((w, i) => {
    if (i % shown === 0) node.append(svg("text", { x: x(i), y: height - 10, "text-anchor": "middle", "font-size": 10,
      fill: "#6b7385" }, w.slice(11, 19)));
  });
  series.forEach((s, index) => {
    const offset = options.range ? (index - (series.length - 1) / 2) * 4 : 0;
    if (options.range) {
      for (const p of s.points) {
        node.append(svg("line", { x1: x(p.i) + offset, x2: x(p.i) + offset, y1: y(p.low), y2: y(p.high),
          stroke: s.color, "stroke-width": 3, "stroke-linecap": "round" }));
      }
    } else {
      node.append(svg("polyline", { fill: "none", stroke: s.color, "stroke-width": 2,
        points: s.points.map((p) => `${x(p.i)},${y(p.high)}`).join(" ") }));
      for (const p of s.points) node.append(svg("circle", { cx: x(p.i), cy: y(p.high), r: 2.5, fill: s.color }));
    }
  });
  return node;
}

function renderFigures(figures, fleet) {
  const names = [...new Set([...(fleet.unicorns || []).map((u) => u.name), ...figures.map((f) => f.name)])];
  const windows = [...new Set(figures.map((f) => f.window))].sort();
  const seriesOf = (low, high) => names.map((name) => ({
    name, color: colorOf(names, name),
    points: figures.filter((f) => f.name === name).map((f) => ({ i: windows.indexOf(f.window), low: f[low], high: f[high] })),
  })).filter((s) => s.points.length);
  const legend = el("div", { class: "legend" },
    names.map((name) => el("span", {}, el("i", { style: `background:${colorOf(names, name)}` }), name)));
  replace("fleet-charts",
    figures.length ? [
      chart("Distance per window (m)", windows, seriesOf("distance", "distance"), { key: "distance" }),
      chart("Health points, min–max", windows, seriesOf("minHealth", "maxHealth"), { key: "health", range: true }),
      chart("Magic points, min–max", windows, seriesOf("minMagic", "maxMagic"), { key: "magic", range: true }),
      legend,
    ] : el("p", { class: "muted" }, "no windows closed yet (UnicornAggregation is empty)"));
  const columns = [
    { key: "window", label: "window start", text: true }, { key: "name", label: "unicorn", text: true },
    { key: "count", label: "readings" }, { key: "distance", label: "distance" },
    { key: "minMagic", label: "magic min" }, { key: "maxMagic", label: "magic max" },
    { key: "minHealth", label: "health min" }, { key: "maxHealth", label: "health max" }, { key: "parts", label: "parts" },
  ];
  const rows = figures.map((f) => ({ ...f, attributes: { class: "figure", "data-name": f.name, "data-window": f.window } }));
  replace("figures-table", table(columns, rows));
}

function renderSummaries(fleet) {
  const latest = (fleet.latestSummaries || []).slice(0, 3);
  replace("summaries", el("div", {}, `${fleet.summaryRecords || 0} summary records read`),
    latest.map((s) => el("div", { class: "mono" }, JSON.stringify(s))));
}

// ------------------------------------------------------------------ pipelines

function renderPipelines(snapshot) {
  const columns = [
    ["records_in", "records in"], ["invocations", "invocations"], ["retries", "retries"],
    ["bisections", "bisects"], ["function_errors", "function errors"], ["partial_failures", "partial"],
    ["records_to_destination", "to on-failure"], ["iterator_age_ms", "iterator age (ms)"],
  ];
  replace("pipeline-list", (snapshot.pipelines || []).map((p) => {
    const counters = el("table", { class: "data" },
      el("tr", {}, columns.map(([, label]) => el("th", {}, label))),
      el("tr", {}, columns.map(([key]) => el("td", { "data-field": key }, format(p.counters[key])))));
    const checkpoints = p.checkpoints.map((c) => el("div", { class: "mono" },
      `${c.shard}: checkpoint ${c.lanes.map((l) => l || "none").join(", ")}`));
    const failures = el("ul", { class: "on-failure" }, p.onFailure.map((d) => el("li", { "data-condition": d.condition },
      `${d.condition}: ${d.records} record(s) of ${d.shard} ${String(d.first).slice(-8)}..${String(d.last).slice(-8)}`,
      d.destination ? ` → ${d.destination.split(":").slice(-1)[0]}` : " (no destination)",
      d.sendError ? el("span", { class: "reason" }, ` send failed: ${d.sendError}`) : null,
      d.reasons.length ? el("div", { class: "reason" }, "reasons: ", d.reasons.join("; ")) : null)));
    return el("div", { class: "pipeline", "data-mapping": p.name },
      el("h4", {}, p.name, el("span", { class: "muted" }, ` ${p.source} → ${p.function}`)), counters, checkpoints,
      p.lastError ? el("div", { class: "reason" }, `last function error: ${p.lastError}`) : null,
      el("div", {}, `on-failure: ${p.onFailureTotal} batch(es)`, p.onFailureTotal ? ", latest:" : ""), failures);
  }));
  replace("queues", (snapshot.queues || []).map((q) =>
    el("div", { "data-queue": q.queue }, q.error ? `${q.queue}: ${q.error}` : `${q.queue}: ${q.messages} messages`)));
  const redrive = snapshot.redrive || { available: false, executions: [] };
  document.getElementById("redrive-button").disabled = !redrive.available;
  replace("redrive", redrive.available
    ? [el("div", {}, `state machine ${redrive.stateMachine}`),
       redrive.executions.map((e) => el("div", { class: "mono" }, `${e.name}: ${e.status} (started ${e.started})`))]
    : el("div", { class: "muted" }, "no redrive state machine runs here"));
  const alarms = snapshot.alarms || [];
  const counts = {};
  for (const alarm of alarms) counts[alarm.state] = (counts[alarm.state] || 0) + 1;
  const inAlarm = alarms.filter((a) => a.state === "ALARM");
  replace("alarms", alarms.length
    ? [el("div", {}, Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(", ")),
       inAlarm.map((a) => el("div", { class: "state-ALARM", "data-alarm": a.name }, a.detail)),
       el("details", {}, el("summary", {}, "every alarm"),
         el("table", { class: "data" }, table(
           [{ key: "name", label: "alarm", text: true }, { key: "state", label: "state", text: true },
            { key: "detail", label: "detail", text: true }],
           alarms.map((a) => ({ ...a, attributes: { class: `state-${a.state.replace(/ /g, "-")}` } })))))]
    : el("div", { class: "muted" }, "the template has no alarms"));
}

// ------------------------------------------------------------------ data

function renderData(data) {
  replace("read-models", (data.readModels || []).map((t) => el("div", { class: "read-model", "data-table": t.table },
    el("strong", {}, t.table), ` ${t.error ? t.error : `${t.items}${t.complete === false ? "+" : ""} items`}`,
    (t.latest || []).map((item) => el("div", { class: "mono" }, JSON.stringify(item))))));
  const lake = data.lake || { tables: [], currentView: { rows: [] } };
  const view = lake.currentView || { rows: [] };
  replace("lake",
    el("div", {}, lake.tables.length ? lake.tables.map((t) => `${t.table}: ${t.rows} rows`).join(", ") : "no Parquet objects yet"),
    view.query ? [el("div", { class: "muted" }, `${view.query}, first ${view.rows.length} lines:`),
      el("table", { class: "data" }, el("tr", {}, view.columns.map((c) => el("th", { class: "text" }, c))),
        view.rows.map((r) => el("tr", {}, r.map((v) => el("td", { class: "text" }, format(v))))))] : null);
  const lists = data.optOuts || [];
  replace("opt-outs", lists.length ? lists.map((l) => el("div", { "data-opt-out-list": l.name },
    el("strong", {}, l.name), `: ${l.numbers.length} numbers`,
    l.numbers.map((n) => el("div", { class: "mono" }, n.number, n.endUserOptedOut ? " (replied STOP)" : ""))))
    : el("div", { class: "muted" }, "no opt-out list"));
}

// ------------------------------------------------------------------ report extras

function renderTimeline(timeline) {
  const lanes = timeline.lanes || [];
  if (!lanes.length) { replace("timeline-chart", el("p", { class: "muted" }, "no invocations traced")); return; }
  const width = 900, label = 260, rowHeight = 26, top = 20;
  const span = Math.max(1, timeline.durationMs);
  const height = top + lanes.length * rowHeight + 30;
  const colors = { batch: "#2b8a3e", partial: "#f08c00", error: "#c92a2a", retry: "#e8590c", bisect: "#ae3ec9",
                   onFailure: "#1d2330" };
  const node = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", "data-chart": "timeline" });
  lanes.forEach((lane, row) => {
    const y = top + row * rowHeight + rowHeight / 2;
    node.append(svg("text", { x: 4, y: y + 4, "font-size": 11 }, `${lane.mapping} ${lane.shard.slice(-6)}`),
      svg("line", { x1: label, x2: width - 10, y1: y, y2: y, stroke: "#eceef3" }));
    for (const event of lane.events) {
      const x = label + ((width - label - 10) * event.t) / span;
      const shape = event.kind === "onFailure"
        ? svg("rect", { x: x - 4, y: y - 8, width: 8, height: 16, fill: colors.onFailure })
        : svg("circle", { cx: x, cy: y, r: Math.min(9, 3 + Math.sqrt(event.records)), fill: colors[event.kind],
                          "fill-opacity": 0.7 });
      shape.append(svg("title", {}, `${event.kind}: ${event.records} records ${event.detail || ""}`));
      node.append(shape);
    }
  });
  node.append(svg("text", { x: label, y: height - 8, "font-size": 10, fill: "#6b7385" }, timeline.start),
    svg("text", { x: width - 10, y: height - 8, "font-size": 10, "text-anchor": "end", fill: "#6b7385" },
      `+${(span / 1000).toFixed(1)} s`));
  const legend = el("div", { class: "legend" }, Object.entries(colors).map(([kind, color]) =>
    el("span", {}, el("i", { style: `background:${color}` }), kind)));
  const totals = el("div", { class: "muted" }, Object.entries(timeline.totals || {}).map(([k, v]) => `${k}: ${v}`).join(", "));
  replace("timeline-chart", node, legend, totals);
}

// ------------------------------------------------------------------ wiring

function render(snapshot) {
  renderMap(snapshot.fleet || { unicorns: [] });
  renderFigures(snapshot.figures || [], snapshot.fleet || {});
  renderSummaries(snapshot.fleet || {});
  renderPipelines(snapshot);
  renderData(snapshot.data || {});
  const errors = Object.entries(snapshot.errors || {});
  replace("errors", errors.map(([part, message]) => el("div", {}, `${part}: ${message}`)));
}

function setStatus(text, kind) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify(body) });
  let answer;
  try {
    answer = await response.json();
  } catch {  // not JSON: say what the server said, never leave the button silent
    answer = { error: `${response.status} ${response.statusText}` };
  }
  document.getElementById("action-result").textContent = response.ok
    ? JSON.stringify(answer) : `refused: ${answer.error}`;
}

function wireActions() {
  document.getElementById("burst-form").addEventListener("submit", (event) => {
    event.preventDefault();
    post("/console/api/burst", {
      unicorns: Number(document.getElementById("burst-unicorns").value),
      perUnicorn: Number(document.getElementById("burst-per-unicorn").value),
      poison: document.getElementById("burst-poison").checked,
    });
  });
  document.getElementById("redrive-form").addEventListener("submit", (event) => {
    event.preventDefault();
    post("/console/api/redrive", { dryRun: document.getElementById("redrive-dry-run").checked });
  });
}

function startLive() {
  document.body.classList.add("live");
  wireActions();
  const events = new EventSource("/console/api/events");
  events.addEventListener("snapshot", (message) => {
    const snapshot = JSON.parse(message.data);
    render(snapshot);
    setStatus(`live · ${snapshot.generatedAt} · ${snapshot.endpoint}`, "live");
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
  });
  events.addEventListener("error", () => setStatus("disconnected: is `tributary up` still running? retrying…", "down"));
}

function startReport(report) {
  document.body.classList.add("report");
  render(report.snapshot);
  document.getElementById("summary-text").textContent = (report.summary || []).join("\n");
  renderTimeline(report.timeline || { lanes: [] });
  setStatus(`report · ${report.snapshot.generatedAt}`, "");
}

const embedded = document.getElementById("report-data");
if (embedded) startReport(JSON.parse(embedded.textContent));
else startLive();
