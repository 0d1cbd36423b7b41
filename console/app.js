// The web console: five pages over the HTTP API of the server that serves it (router or
// storage node), plain ES modules with no build step. Each page renders into <main>, and the
// live ones poll every POLL_MS while shown.
import { ApiError, apiKey, call, get, onKeyNeeded, setApiKey } from "./api.js";
import { lineChart, ringChart } from "./charts.js";

const POLL_MS = 2000;
/** Chart history kept in the page (newest last), at most this long. */
const HISTORY_MS = 10 * 60_000;

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#page");

/** An element: h("td", {class: "num"}, "12"); children are nodes or text. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows),
  );
}

function bytes(n) {
  const v = Number(n);
  if (v >= 2 ** 30) return `${(v / 2 ** 30).toFixed(1)} GiB`;
  if (v >= 2 ** 20) return `${(v / 2 ** 20).toFixed(1)} MiB`;
  if (v >= 2 ** 10) return `${(v / 2 ** 10).toFixed(1)} KiB`;
  return `${v} B`;
}

function showError(where, e) {
  where.replaceChildren(h("div", { class: "error" }, e instanceof Error ? e.message : String(e)));
}

/** The router's /console/state, or null on a storage node (404). */
async function routerState() {
  try {
    return await get("/console/state");
  } catch (e) {
    if (e instanceof ApiError && e.http === 404) return null;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster

async function renderCluster(root) {
  const [members, stats, state] = await Promise.all([
    get("/members"),
    get("/stats"),
    routerState(),
  ]);
  const shares = new Map((state?.ring ?? []).map((r) => [r.address, r.share]));
  const nodeStats = new Map((stats.nodes ?? []).map((n) => [n.address, n]));
  const rows = members.members.map((m) => {
    const n = nodeStats.get(m.address);
    const share = shares.get(m.address);
    return h(
      "tr",
      { "data-member": m.id },
      h("td", {}, m.id, m.id === members.self_id ? " (this server)" : ""),
      h("td", {}, m.address),
      h("td", { class: `state-${m.state}` }, m.state),
      h("td", { class: "num" }, m.incarnation),
      h("td", {}, m.is_router ? "router" : "storage"),
      h("td", { class: "num" }, share === undefined ? "–" : `${(share * 100).toFixed(1)}%`),
      h("td", { class: "num" }, n === undefined ? "–" : n.hints_pending),
      h("td", { class: "error" }, n?.error ?? ""),
    );
  });
  const ring = state === null ? [] : state.ring.map((r) => ({
    ...r,
    state: members.members.find((m) => m.address === r.address)?.state ?? "alive",
  }));
  const rebalancing = stats.rebalancing
    ? (() => {
      const done = Number(stats.transfers_done ?? 0);
      const active = Number(stats.transfers_active ?? 0);
      const pending = Number(stats.transfers_pending ?? 0);
      return h(
        "p",
        {},
        "Rebalancing: ",
        h("progress", { max: done + active + pending || 1, value: done }),
        ` ${done} transfers done, ${active} running, ${pending} to start; ` +
          `${stats.points_copied ?? 0} entries copied`,
      );
    })()
    : h("p", { class: "hint" }, "No rebalancing in progress.");
  root.replaceChildren(
    h(
      "section",
      {},
      h("h2", {}, stats.is_router ? "Cluster (as the router sees it)" : "This storage node"),
      h(
        "div",
        { class: "row" },
        state === null ? null : h("div", {}, ringChart(ring)),
        h(
          "div",
          { class: "grow" },
          table(
            ["member", "address", "state", "incarnation", "role", "ring share", "hints queued", ""],
            rows,
            { id: "members" },
          ),
          rebalancing,
          state === null
            ? null
            : h("p", { class: "hint" }, `Replication factor ${state.replication_factor}.`),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Collections

async function renderCollections(root) {
  const [list, stats] = await Promise.all([get("/collections"), get("/stats")]);
  const memory = new Map();
  for (const c of stats.collections ?? []) memory.set(c.name, c);
  const counts = await Promise.all(list.collections.map(async (c) => {
    try {
      return (await call(`/collections/${encodeURIComponent(c.name)}/points/count`, {
        method: "POST",
        body: {},
      })).body.count;
    } catch (e) {
      return e.message;
    }
  }));
  const rows = list.collections.map((c, i) =>
    h(
      "tr",
      { "data-collection": c.name },
      h("td", {}, c.name),
      h("td", { class: "num" }, c.dimension),
      h("td", {}, c.metric),
      h("td", { class: "num" }, c.m),
      h("td", { class: "num" }, c.ef_construction),
      h("td", { class: "num count" }, counts[i]),
      h("td", { class: "num" }, memory.has(c.name) ? bytes(memory.get(c.name).memory_bytes) : "–"),
      h("td", { class: "num" }, memory.has(c.name) ? bytes(memory.get(c.name).wal_bytes) : "–"),
      h("td", { class: "num tombstones" }, memory.get(c.name)?.tombstones ?? "–"),
      h(
        "td",
        {},
        (c.field_indexes ?? []).map((f) => `${f.field} (${f.type})`).join(", ") || "–",
      ),
      h(
        "td",
        {},
        h("button", {
          type: "button",
          onclick: async () => {
            if (
              !confirm(`Drop collection "${c.name}" and all its points? This cannot be undone.`)
            ) {
              return;
            }
            await act(
              root,
              () => call(`/collections/${encodeURIComponent(c.name)}`, { method: "DELETE" }),
            );
          },
        }, "Drop"),
      ),
    )
  );
  const message = h("div", { id: "collections-message" });
  const create = h(
    "form",
    {
      id: "create-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        const f = ev.target;
        act(root, () =>
          call(`/collections/${encodeURIComponent(f.name.value)}`, {
            method: "PUT",
            body: {
              dimension: Number(f.dimension.value),
              metric: f.metric.value,
              m: Number(f.m.value || 0),
              ef_construction: Number(f.ef_construction.value || 0),
            },
          }), message);
      },
    },
    h("label", {}, "name ", h("input", { name: "name", required: true, size: 16 })),
    h(
      "label",
      {},
      "dimension ",
      h("input", { name: "dimension", type: "number", min: 1, required: true }),
    ),
    h(
      "label",
      {},
      "metric ",
      h("select", { name: "metric" }, ["l2", "cosine", "dot"].map((m) => h("option", {}, m))),
    ),
    h("label", {}, "M ", h("input", { name: "m", type: "number", min: 0, placeholder: "16" })),
    h(
      "label",
      {},
      "ef_construction ",
      h("input", { name: "ef_construction", type: "number", min: 0, placeholder: "200" }),
    ),
    h("button", { type: "submit" }, "Create (admin key)"),
  );
  const index = h(
    "form",
    {
      id: "index-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        const f = ev.target;
        act(root, () =>
          call(`/collections/${encodeURIComponent(f.collection.value)}/index`, {
            method: "PUT",
            body: { field: f.field.value, type: f.type.value },
          }), message);
      },
    },
    h(
      "label",
      {},
      "collection ",
      h("select", { name: "collection" }, list.collections.map((c) => h("option", {}, c.name))),
    ),
    h("label", {}, "field ", h("input", { name: "field", required: true })),
    h(
      "label",
      {},
      "type ",
      h(
        "select",
        { name: "type" },
        ["keyword", "integer", "float", "bool"].map((t) => h("option", {}, t)),
      ),
    ),
    h("button", { type: "submit" }, "Index field"),
  );
  root.replaceChildren(
    h(
      "section",
      {},
      h("h2", {}, "Collections"),
      table(
        [
          "name",
          "dim",
          "metric",
          "M",
          "ef_construction",
          "points",
          "memory",
          "WAL",
          "tombstones",
          "payload indexes",
          "",
        ],
        rows,
        { id: "collections" },
      ),
      h(
        "p",
        { class: "hint" },
        "points and tombstones: logical (each point once); memory and WAL: summed over " +
          "every replica.",
      ),
    ),
    h("section", {}, h("h2", {}, "Create a collection"), create),
    h("section", {}, h("h2", {}, "Index a payload field"), index),
    message,
  );
}

/** Runs an action, then re-renders the page; an error is shown in `where`. */
async function act(root, f, where = null) {
  try {
    await f();
    await renderCollections(root);
  } catch (e) {
    showError(where ?? root, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Search playground

async function renderSearch(root) {
  const list = await get("/collections");
  const out = h("div", { id: "search-results" });
  const form = h(
    "form",
    { id: "search-form", onsubmit: (ev) => runSearch(ev, out) },
    h(
      "div",
      {},
      h(
        "label",
        {},
        "collection ",
        h("select", { name: "collection" }, list.collections.map((c) => h("option", {}, c.name))),
      ),
      h("label", {}, "k ", h("input", { name: "k", type: "number", min: 1, value: 10, size: 5 })),
      h("label", {}, "ef ", h("input", { name: "ef", type: "number", min: 0, value: 0, size: 5 })),
      h(
        "label",
        {},
        "from point id ",
        h("input", { name: "from_id", size: 12, placeholder: "(or paste a vector)" }),
      ),
      h(
        "label",
        {},
        h("input", { name: "with_payload", type: "checkbox", checked: true }),
        " payloads",
      ),
    ),
    h("label", { class: "wide" }, "vector (JSON list)", h("textarea", { name: "vector", rows: 3 })),
    h(
      "label",
      { class: "wide" },
      "filter (Qdrant JSON, optional)",
      h("textarea", {
        name: "filter",
        rows: 3,
        placeholder: '{"must": [{"key": "color", "match": {"value": "red"}}]}',
      }),
    ),
    h("button", { type: "submit" }, "Search"),
  );
  root.replaceChildren(h("section", {}, h("h2", {}, "Search playground"), form), out);
}

async function runSearch(ev, out) {
  ev.preventDefault();
  const f = ev.target;
  const name = encodeURIComponent(f.collection.value);
  try {
    let vector;
    if (f.from_id.value.trim() !== "") {
      const p = await get(
        `/collections/${name}/points/${encodeURIComponent(f.from_id.value.trim())}`,
      );
      vector = p.vector;
      f.vector.value = JSON.stringify(vector);
    } else {
      vector = JSON.parse(f.vector.value);
    }
    const body = {
      vector,
      k: Number(f.k.value),
      ef: Number(f.ef.value),
      with_payload: f.with_payload.checked,
    };
    if (f.filter.value.trim() !== "") body.filter = JSON.parse(f.filter.value);
    const r = await call(`/collections/${name}/points/search`, { method: "POST", body });
    const timing = /dur=([0-9.]+)/.exec(r.headers.get("server-timing") ?? "");
    const res = r.body;
    out.replaceChildren(h(
      "section",
      {},
      h(
        "p",
        { id: "search-summary" },
        `${res.results.length} results; the server took ${timing ? timing[1] : "?"} ms ` +
          `(${r.ms.toFixed(1)} ms round trip); shards answered ${res.shards_answered} of ` +
          `${res.shards_total}${res.partial ? " (PARTIAL: some shards did not answer)" : ""}` +
          ((res.nodes_answered ?? []).length > 0
            ? `; nodes answered: ${res.nodes_answered.join(", ")}`
            : ""),
      ),
      table(
        ["#", "id", "distance", "payload"],
        res.results.map((x, i) =>
          h(
            "tr",
            { class: "result" },
            h("td", { class: "num" }, i + 1),
            h("td", { class: "num id" }, x.id),
            h("td", { class: "num distance" }, x.distance.toPrecision(6)),
            h(
              "td",
              {},
              h(
                "pre",
                { class: "payload" },
                x.payload === undefined ? "" : JSON.stringify(x.payload),
              ),
            ),
          )
        ),
        { id: "results" },
      ),
    ));
  } catch (e) {
    showError(out, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Recall monitor

/** collection -> [[t_ms, recall]] kept while the console is open. */
const recallHistory = new Map();

function recordRecall(state) {
  if (state?.recall == null) return;
  for (const c of state.recall.collections) {
    if (c.recall === null) continue;
    const h = recallHistory.get(c.collection) ?? [];
    h.push([state.time_ms, c.recall]);
    while (h.length > 0 && h[0][0] < state.time_ms - HISTORY_MS) h.shift();
    recallHistory.set(c.collection, h);
  }
}

async function renderRecall(root) {
  const state = await routerState();
  if (state === null || state.recall === null) {
    root.replaceChildren(
      h(
        "section",
        {},
        h("h2", {}, "Recall"),
        h("p", {}, "The recall monitor runs on the router; this is a storage node."),
      ),
    );
    return;
  }
  recordRecall(state);
  const r = state.recall;
  const rows = r.collections.map((c) =>
    h(
      "tr",
      { "data-collection": c.collection },
      h("td", {}, c.collection),
      h(
        "td",
        { class: `num${c.recall !== null && c.recall < r.warn_below ? " warn" : ""}` },
        c.recall === null ? "–" : c.recall.toFixed(4),
      ),
      h("td", { class: "num" }, c.k),
      h("td", { class: "num" }, c.ef === 0 ? "default" : c.ef),
      h("td", { class: "num" }, c.samples),
      h("td", { class: "num" }, c.total),
    )
  );
  const series = [...recallHistory.entries()].map(([name, points]) => ({ name, points }));
  root.replaceChildren(h(
    "section",
    {},
    h("h2", {}, "Live recall@k"),
    h(
      "p",
      { class: "hint" },
      `The router re-runs ${(r.sample_rate * 100).toFixed(2)}% of searches exactly (brute force, ` +
        `one at a time) and compares; warning below ${r.warn_below}. Measured ${r.counts.measured}, ` +
        `dropped ${r.counts.dropped} (queue full), failed ${r.counts.failed}, waiting ${r.queued}.`,
    ),
    table(["collection", "recall@k", "k", "ef", "window", "measured"], rows, { id: "recall" }),
    lineChart(series, { title: "recall@k (rolling)", min: 0, max: 1, span_ms: HISTORY_MS }),
  ));
}

// ---------------------------------------------------------------------------------------------
// Charts from the server's own counters (GET /metrics, GET /stats)

/** Parses Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const SEARCH_RPC = new Set(["Search", "SearchBatch"]);
const WRITE_RPC = new Set(["Put", "PutBatch", "Delete", "DeleteBatch", "DeleteByFilter"]);
const isSearchRoute = (r) => /\/points\/search/.test(r);
const isWriteRoute = (method, r) =>
  (method === "PUT" && /\/points(\/\{id\})?$/.test(r)) ||
  (method === "DELETE" && /\/points\/\{id\}$/.test(r)) || r.endsWith("/points/delete");

/** One scrape reduced to the totals the charts need. */
function totals(samples, stats) {
  const t = { searches: 0, writes: 0, buckets: new Map(), wal_syncs: 0 };
  for (const s of samples) {
    const l = s.labels;
    if (s.name === "vectordb_grpc_requests_total") {
      if (SEARCH_RPC.has(l.method)) t.searches += s.value;
      if (WRITE_RPC.has(l.method)) t.writes += s.value;
    } else if (s.name === "vectordb_http_requests_total") {
      if (isSearchRoute(l.route)) t.searches += s.value;
      if (isWriteRoute(l.method, l.route)) t.writes += s.value;
    } else if (s.name.endsWith("_request_duration_seconds_bucket")) {
      const search = s.name.startsWith("vectordb_grpc")
        ? SEARCH_RPC.has(l.method)
        : isSearchRoute(l.route ?? "");
      if (search) t.buckets.set(l.le, (t.buckets.get(l.le) ?? 0) + s.value);
    }
  }
  const nodes = stats.nodes && stats.nodes.length > 0
    ? stats.nodes
    : [{ collections: stats.collections }];
  for (const n of nodes) {
    for (const c of n.collections ?? []) t.wal_syncs += Number(c.wal_syncs ?? 0);
  }
  return t;
}

/** The q quantile (ms) of the searches between two bucket snapshots; NaN when none. */
function quantile(prev, cur, q) {
  const les = [...cur.keys()].sort((
    a,
    b,
  ) => (a === "+Inf" ? 1 : b === "+Inf" ? -1 : Number(a) - Number(b)));
  const d = les.map((le) => [le, (cur.get(le) ?? 0) - (prev.get(le) ?? 0)]);
  const total = d.length === 0 ? 0 : d[d.length - 1][1];
  if (total <= 0) return NaN;
  let lower = 0;
  let below = 0;
  for (const [le, n] of d) {
    if (n >= q * total) {
      if (le === "+Inf") return lower * 1000;
      const upper = Number(le);
      const share = n - below === 0 ? 0 : (q * total - below) / (n - below);
      return (lower + (upper - lower) * share) * 1000;
    }
    below = n;
    lower = le === "+Inf" ? lower : Number(le);
  }
  return NaN;
}

const rates = { last: null, qps: [], p50: [], p99: [], wps: [], syncs: [] };

async function sampleRates() {
  const [text, stats] = await Promise.all([call("/metrics", { text: true }), get("/stats")]);
  const now = Date.now();
  const cur = { t: now, ...totals(parseMetrics(text.body), stats) };
  const prev = rates.last;
  rates.last = cur;
  if (prev === null) return;
  const dt = (cur.t - prev.t) / 1000;
  const push = (list, v) => {
    list.push([now, v]);
    while (list.length > 0 && list[0][0] < now - HISTORY_MS) list.shift();
  };
  push(rates.qps, (cur.searches - prev.searches) / dt);
  push(rates.wps, (cur.writes - prev.writes) / dt);
  push(rates.syncs, Math.max(0, cur.wal_syncs - prev.wal_syncs) / dt);
  push(rates.p50, quantile(prev.buckets, cur.buckets, 0.5));
  push(rates.p99, quantile(prev.buckets, cur.buckets, 0.99));
}

async function renderCharts(root) {
  await sampleRates();
  const span_ms = HISTORY_MS;
  root.replaceChildren(h(
    "section",
    { id: "charts" },
    h("h2", {}, "This server's counters"),
    h(
      "p",
      { class: "hint" },
      `Sampled every ${POLL_MS / 1000} s while this page is open (GET /metrics, GET /stats).`,
    ),
    lineChart([{ name: "searches/s", points: rates.qps }], { title: "searches/s", span_ms }),
    lineChart([{ name: "p50", points: rates.p50 }, { name: "p99", points: rates.p99 }], {
      title: "search latency p50 · p99 (ms)",
      span_ms,
    }),
    lineChart([{ name: "writes/s", points: rates.wps }], { title: "write requests/s", span_ms }),
    lineChart([{ name: "WAL syncs/s", points: rates.syncs }], {
      title: "WAL syncs/s (all nodes)",
      span_ms,
    }),
  ));
}

// ---------------------------------------------------------------------------------------------
// Navigation, polling and the API key

const PAGES = {
  cluster: { render: renderCluster, live: true },
  collections: { render: renderCollections, live: false },
  search: { render: renderSearch, live: false },
  recall: { render: renderRecall, live: true },
  charts: { render: renderCharts, live: true },
};

let timer = null;
let generation = 0;

async function show() {
  const name = location.hash.slice(1) || "cluster";
  const page = PAGES[name] ?? PAGES.cluster;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  if (timer !== null) clearTimeout(timer);
  const mine = ++generation;
  const root = main();
  root.dataset.page = name;
  const tick = async () => {
    try {
      await page.render(root);
      root.dataset.loaded = String(Number(root.dataset.loaded ?? 0) + 1);
      $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      showError(root, e);
    }
    if (page.live && mine === generation) timer = setTimeout(tick, POLL_MS);
  };
  root.dataset.loaded = "0";
  await tick();
}

function keyForm(message) {
  const form = $("#key-form");
  form.hidden = false;
  $("#status").textContent = message;
  $("#key-input").focus();
}

onKeyNeeded(keyForm);
$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setApiKey($("#key-input").value.trim());
  $("#key-input").value = "";
  $("#key-form").hidden = true;
  $("#forget-key").hidden = false;
  show();
});
$("#forget-key").addEventListener("click", () => {
  setApiKey(null);
  $("#forget-key").hidden = true;
});
$("#forget-key").hidden = apiKey() === null;
// Recall and rate history keep accumulating on every page while the console is open.
setInterval(() => {
  if (main().dataset.page !== "recall") routerState().then(recordRecall, () => {});
  if (main().dataset.page !== "charts") sampleRates().catch(() => {});
}, POLL_MS);
addEventListener("hashchange", show);
show();
