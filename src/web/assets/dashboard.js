// stocksync dashboard: plain JavaScript, no build step, served by stocksync itself.
//
// Reads: GET /api/v1/skus (browse and prefix search), GET /api/v1/stock/{sku} (levels and
// per-channel numbers), GET /api/v1/movements?sku= (movement history, when the engine has
// it) or GET /api/v1/stock/{sku}/events (recent store events), GET /api/v1/channels
// (channel health), GET /readyz (readiness, and the cluster panel when several instances
// run: members, partitions owned, channel leaders, rebalances). Live updates: GET /api/v1/events (server-sent events);
// when that fails, or with ?live=poll, it polls every second instead.
// Deep links: /?sku=SKU-A or /#sku=SKU-A open that SKU.
"use strict";

(function () {
  const POLL_MS = 1000;
  const PAGE = 50;
  const MOVEMENTS = 20;

  const state = {
    sku: null,
    prefix: "",
    after: null,
    seq: null,
    source: null,
    // "events" (newest first, GET /api/v1/stock/{sku}/events) for the recent list; the
    // full history API (GET /api/v1/movements, oldest first, filters, CSV) is linked.
    historyEndpoint: "events",
    live: null,
    pollTimer: null,
    readyTimer: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText;
      const error = new Error(url + ": " + response.status + " " + detail);
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  }

  function showError(error) {
    const node = $("error");
    if (!error) {
      node.hidden = true;
      return;
    }
    node.textContent = String(error.message || error);
    node.hidden = false;
  }

  function fmtNumber(value) {
    return value === undefined || value === null ? "–" : String(value);
  }

  function fmtAgo(ms) {
    if (ms === undefined || ms === null) return "never";
    const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function fmtTime(ms) {
    if (ms === undefined || ms === null) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function numCell(value, field) {
    const cell = el("td", { class: "num", "data-field": field, text: fmtNumber(value) });
    if (typeof value === "number" && value < 0) cell.classList.add("negative");
    return cell;
  }

  function markUpdated() {
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // ---- SKU browser -------------------------------------------------------------------

  async function loadSkus(reset) {
    if (reset) {
      state.after = null;
      $("sku-list").replaceChildren();
    }
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state.prefix) params.set("prefix", state.prefix);
    if (state.after) params.set("after", state.after);
    try {
      const page = await getJson("/api/v1/skus?" + params);
      const list = $("sku-list");
      for (const sku of page.skus) {
        const link = el("a", { href: "?sku=" + encodeURIComponent(sku), text: sku, "data-sku": sku });
        if (sku === state.sku) link.classList.add("selected");
        link.addEventListener("click", (event) => {
          event.preventDefault();
          selectSku(sku);
        });
        list.append(el("li", {}, link));
      }
      state.after = page.next_after;
      $("more").hidden = !page.next_after;
      $("sku-list-empty").hidden = list.children.length > 0;
    } catch (error) {
      showError(error);
    }
  }

  function highlightSelected() {
    for (const link of $("sku-list").querySelectorAll("a")) {
      link.classList.toggle("selected", link.dataset.sku === state.sku);
    }
  }

  // ---- one SKU -----------------------------------------------------------------------

  function firstDefined(object, keys) {
    for (const key of keys) {
      if (object && object[key] !== undefined && object[key] !== null) return object[key];
    }
    return undefined;
  }

  function renderLocations(view) {
    // In transit and inbound (purchase orders) only when some location has any.
    const hasTransit = view.locations.some((l) => l.in_transit);
    const hasInbound = view.locations.some((l) => l.inbound);
    const head = ["Location", "On hand", "Reserved", "Available"]
      .concat(hasTransit ? ["In transit"] : [])
      .concat(hasInbound ? ["Inbound"] : []);
    $("locations").tHead.rows[0].replaceChildren(
      ...head.map((title, i) => el("th", { class: i ? "num" : null, text: title })));
    const body = $("locations").tBodies[0];
    body.replaceChildren(...view.locations.map((l) => el("tr", { "data-location": l.location },
      el("td", { text: l.location }),
      numCell(l.on_hand, "on_hand"),
      numCell(l.reserved, "reserved"),
      numCell(l.available, "available"),
      hasTransit ? numCell(l.in_transit, "in_transit") : null,
      hasInbound ? numCell(l.inbound, "inbound") : null)));
    $("locations-empty").hidden = view.locations.length > 0;
  }

  const REPORTED_KEYS = ["channel_reported", "reported", "channel_quantity", "channel_value", "observed"];

  function discrepancyText(value) {
    if (value === undefined || value === null) return null;
    if (typeof value === "number") return value === 0 ? null : (value > 0 ? "+" : "") + value;
    if (typeof value === "object") {
      const parts = [];
      const kind = firstDefined(value, ["class", "kind", "classification", "type"]);
      let delta = firstDefined(value, ["delta", "difference", "diff"]);
      if (delta === undefined && typeof value.channel_value === "number" && typeof value.ledger_atp === "number") {
        delta = value.channel_value - value.ledger_atp;
      }
      if (kind) parts.push(String(kind).replace(/_/g, " "));
      if (delta !== undefined) parts.push((delta > 0 ? "+" : "") + delta);
      return parts.length ? parts.join(" ") : JSON.stringify(value);
    }
    return String(value);
  }

  // A multi-location channel (Shopify location_map) lists one part per location of its own:
  // the channel row shows the total, one row per location follows with its own push,
  // report and discrepancy.
  function channelRows(channels) {
    const rows = [];
    for (const c of channels) {
      const locations = c.locations || [];
      rows.push(locations.length ? Object.assign({}, c, { perLocation: true }) : c);
      for (const l of locations) {
        rows.push({
          channel: c.channel,
          label: c.channel + " \u203a " + l.name + " (" + l.location_id + ")",
          location: l.location_id,
          atp: l.atp,
          last_pushed: l.last_pushed,
          channel_report: l.channel_report,
          note: "fed by " + (l.feeds || []).join(", ") + "; its part of the channel's ATP, by the stock at its locations",
        });
      }
    }
    return rows;
  }

  function renderChannelAtp(view) {
    const channels = channelRows(view.channels || []);
    const hasReported = channels.some((c) => "channel_report" in c || firstDefined(c, REPORTED_KEYS) !== undefined);
    const hasDiscrepancy = channels.some((c) => "discrepancy" in c || "channel_report" in c);
    const head = ["Channel", "ATP", "Last pushed"]
      .concat(hasReported ? ["Channel reports"] : [])
      .concat(hasDiscrepancy || hasReported ? ["Discrepancy"] : [])
      .concat(["How ATP was reached"]);
    $("channels-atp").tHead.rows[0].replaceChildren(
      ...head.map((title, i) => el("th", { class: i === 1 || i === 2 || (hasReported && i === 3) ? "num" : null, text: title })));
    const rows = channels.map((c) => {
      const report = c.channel_report;
      const reported = report ? report.value : firstDefined(c, REPORTED_KEYS);
      let discrepancy = discrepancyText(report ? report.discrepancy : c.discrepancy);
      if (discrepancy === null && !hasDiscrepancy && typeof reported === "number" && typeof c.last_pushed === "number" && reported !== c.last_pushed) {
        discrepancy = (reported - c.last_pushed > 0 ? "+" : "") + (reported - c.last_pushed);
      }
      const pushedCell = c.perLocation
        ? el("td", { class: "num muted", "data-field": "last_pushed", text: "per location" })
        : numCell(c.last_pushed, "last_pushed");
      if (typeof c.last_pushed === "number") {
        pushedCell.classList.add(c.last_pushed === c.atp ? "in-sync" : "pending");
        if (c.last_pushed !== c.atp) pushedCell.title = "propagation has not pushed the current ATP yet";
      }
      const explanation = c.explanation ? explain(c.explanation) : (c.note || "");
      return el("tr", { "data-channel": c.channel, "data-location": c.location || null },
        el("td", { text: c.label || c.channel }),
        numCell(c.atp, "atp"),
        pushedCell,
        hasReported ? numCell(typeof reported === "object" ? JSON.stringify(reported) : reported, "reported") : null,
        hasDiscrepancy || hasReported
          ? el("td", { "data-field": "discrepancy", class: discrepancy ? "discrepancy" : "in-sync", text: discrepancy || "none" })
          : null,
        el("td", { class: "wrap muted", text: explanation }));
    });
    $("channels-atp").tBodies[0].replaceChildren(...rows);
  }

  function explain(breakdown) {
    const parts = [];
    if (Array.isArray(breakdown.fed_by) && breakdown.fed_by.length) {
      parts.push(breakdown.fed_by
        .map((pair) => pair[0] + " " + Math.max(0, pair[1]))
        .join(" + "));
    }
    if (breakdown.safety_stock) parts.push("− safety " + breakdown.safety_stock);
    if (breakdown.capped_at !== undefined && breakdown.capped_at !== null) parts.push("capped at " + breakdown.capped_at);
    return parts.join(" ");
  }

  function renderReservations(view) {
    const list = view.reservations || [];
    $("reservations").tBodies[0].replaceChildren(...list.map((r) => el("tr", {},
      el("td", { text: r.reservation }),
      el("td", { text: r.location }),
      numCell(r.quantity, "quantity"),
      numCell(r.fulfilled, "fulfilled"),
      numCell(r.released, "released"),
      numCell(r.open, "open"))));
    $("reservations-empty").hidden = list.length > 0;
  }

  function renderStock(view) {
    if (!view || view.sku !== state.sku) return;
    $("sku-panel").hidden = false;
    $("sku-placeholder").hidden = true;
    $("sku-title").textContent = view.sku;
    $("sku-seq").textContent = "seq " + view.seq;
    renderLocations(view);
    renderChannelAtp(view);
    renderReservations(view);
    if (view.seq !== state.seq) {
      state.seq = view.seq;
      loadMovements();
    }
    markUpdated();
  }

  // ---- movements ---------------------------------------------------------------------

  const DETAIL_SKIP = new Set(["schema_version", "sku", "idempotency_key", "source", "type", "occurred_at_ms", "kind"]);

  function movementRow(item) {
    const movement = item.movement && typeof item.movement === "object" ? item.movement : item;
    const detail = [];
    for (const [key, value] of Object.entries(movement)) {
      if (DETAIL_SKIP.has(key) || value === null || value === undefined) continue;
      if (movement === item && ["seq", "recorded_at_ms", "at_ms", "levels", "resulting_levels"].includes(key)) continue;
      detail.push(key + " " + (typeof value === "object" ? JSON.stringify(value) : value));
    }
    const levels = firstDefined(item, ["resulting_levels", "levels", "after"]);
    if (levels) detail.push("→ " + JSON.stringify(levels));
    return el("tr", {},
      numCell(item.seq, "seq"),
      el("td", { text: fmtTime(firstDefined(item, ["recorded_at_ms", "at_ms", "timestamp_ms", "occurred_at_ms"]) ?? movement.occurred_at_ms) }),
      el("td", { text: firstDefined(movement, ["type", "kind"]) ?? firstDefined(item, ["kind", "type"]) ?? "" }),
      el("td", { text: firstDefined(movement, ["source"]) ?? firstDefined(item, ["source"]) ?? "" }),
      el("td", { class: "wrap", text: detail.join(", ") }),
      el("td", { class: "muted", text: firstDefined(item, ["idempotency_key"]) ?? firstDefined(movement, ["idempotency_key"]) ?? "" }));
  }

  function itemsOf(page) {
    if (Array.isArray(page)) return page;
    for (const key of ["movements", "items", "events", "records", "entries"]) {
      if (page && Array.isArray(page[key])) return page[key];
    }
    return [];
  }

  async function loadMovements() {
    const sku = state.sku;
    if (!sku) return;
    const encoded = encodeURIComponent(sku);
    let page = null;
    if (state.historyEndpoint !== "events") {
      try {
        page = await getJson("/api/v1/movements?sku=" + encoded + "&limit=" + MOVEMENTS);
        state.historyEndpoint = "movements";
      } catch (error) {
        page = null;
        if (state.historyEndpoint !== "movements") state.historyEndpoint = "events";
      }
    }
    if (page === null) {
      try {
        page = await getJson("/api/v1/stock/" + encoded + "/events?limit=" + MOVEMENTS);
      } catch (error) {
        showError(error);
        return;
      }
    }
    if (sku !== state.sku) return;
    let items = itemsOf(page).slice();
    items.sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0));
    items = items.slice(0, MOVEMENTS);
    const full = el("a", { href: "/api/v1/movements?sku=" + encoded, text: "full history" });
    $("movements-source").replaceChildren(state.historyEndpoint === "movements" ? "(movement history) " : "(newest first) ", full);
    $("movements").tBodies[0].replaceChildren(...items.map(movementRow));
    $("movements-empty").hidden = items.length > 0;
  }

  // ---- channel health ----------------------------------------------------------------

  function renderChannelHealth(page) {
    const channels = (page && page.channels) || [];
    const rows = channels.map((c) => {
      const rate = typeof c.error_rate === "number" ? (c.error_rate * 100).toFixed(1) + " %" : "–";
      const webhooks = c.last_webhook_at_ms ? fmtAgo(c.last_webhook_at_ms) : "none yet";
      return el("tr", { "data-channel": c.channel },
        el("td", {}, el("strong", { text: c.channel }), " ", el("span", { class: "muted", text: c.kind || "" })),
        el("td", {}, el("span", { class: "pill pill-" + (c.state || "unknown"), "data-field": "state", text: c.state || "?" })),
        el("td", { "data-field": "connected", text: c.connected ? "yes" : "no" }),
        numCell(c.queue_depth, "queue_depth"),
        numCell(c.in_flight, "in_flight"),
        numCell(c.isolated, "isolated"),
        el("td", { "data-field": "rate_limited", text: c.rate_limited ? "throttled (" + c.throttled_in_window + " in " + c.window_secs + " s)" : "ok" }),
        el("td", { "data-field": "last_success", text: fmtAgo(c.last_success_at_ms) }),
        el("td", { class: "num", "data-field": "error_rate", text: rate }),
        el("td", { "data-field": "webhooks", text: webhooks }),
        el("td", { class: "wrap muted", text: c.last_error ? c.last_error + " (" + fmtAgo(c.last_error_at_ms) + ")" : "" }));
    });
    $("channel-health").tBodies[0].replaceChildren(...rows);
    $("channel-health-empty").hidden = channels.length > 0;
    markUpdated();
  }

  // The cluster as this instance sees it (GET /readyz `cluster`; absent on one instance).
  function renderCluster(cluster) {
    const panel = $("cluster-panel");
    if (!cluster) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const owners = {};
    (cluster.partitions || []).forEach((p) => {
      if (p.owner) (owners[p.owner] = owners[p.owner] || []).push(p.partition);
    });
    const leaders = {};
    (cluster.channels || []).forEach((c) => {
      if (c.leader) (leaders[c.leader] = leaders[c.leader] || []).push(c.channel);
    });
    const rows = (cluster.members || []).map((m) => {
      const parts = owners[m.member_id] || [];
      const here = m.member_id === cluster.member_id;
      return el("tr", { "data-member": m.member_id },
        el("td", { "data-field": "member", text: m.member_id + (here ? " (this one)" : "") }),
        el("td", { "data-field": "url", text: m.url }),
        el("td", { "data-field": "live", text: m.live ? "yes" : "no" }),
        el("td", { class: "num", "data-field": "partitions", text: parts.length + (parts.length ? " (" + parts.join(", ") + ")" : "") }),
        el("td", { "data-field": "channels", text: (leaders[m.member_id] || []).join(", ") }));
    });
    $("cluster-members").tBodies[0].replaceChildren(...rows);
    const unowned = (cluster.partitions || []).filter((p) => !p.owner).length;
    $("cluster-summary").textContent =
      (cluster.members || []).filter((m) => m.live).length + " live instance(s) · " +
      (cluster.partitions || []).length + " partitions" + (unowned ? " (" + unowned + " without owner)" : "") +
      " · rebalances here " + cluster.rebalances + " · leadership changes here " + cluster.leadership_changes +
      " · last round " + fmtAgo(cluster.last_round_ms);
    const error = $("cluster-error");
    error.hidden = !cluster.error;
    error.textContent = cluster.error || "";
  }

  async function loadReadiness() {
    const pill = $("readiness");
    try {
      const response = await fetch("/readyz");
      const body = await response.json();
      pill.className = "pill " + (response.ok ? "pill-ok" : "pill-bad");
      pill.textContent = response.ok ? "ready" : "not ready: " + body.not_ready.join(", ");
      pill.title = body.checks.map((c) => c.name + ": " + c.detail).join("\n");
      renderCluster(body.cluster);
    } catch (error) {
      pill.className = "pill pill-bad";
      pill.textContent = "unreachable";
    }
  }

  // ---- live updates ------------------------------------------------------------------

  function setLive(mode) {
    const pill = $("live");
    pill.className = "pill " + (mode === "sse" ? "pill-ok" : mode === "poll" ? "pill-warn" : "pill-unknown");
    pill.textContent = mode === "sse" ? "live (server-sent events)" : mode === "poll" ? "live (polling 1 s)" : "offline";
  }

  async function pollOnce() {
    try {
      renderChannelHealth(await getJson("/api/v1/channels"));
      if (state.sku) renderStock(await getJson("/api/v1/stock/" + encodeURIComponent(state.sku)));
      showError(null);
    } catch (error) {
      showError(error);
    }
  }

  function startPolling() {
    stopLive();
    setLive("poll");
    pollOnce();
    state.pollTimer = setInterval(pollOnce, POLL_MS);
  }

  function stopLive() {
    if (state.live) {
      state.live.close();
      state.live = null;
    }
    if (state.pollTimer) {
      clearInterval(state.pollTimer);
      state.pollTimer = null;
    }
  }

  function startLive() {
    const params = new URLSearchParams(location.search);
    if (params.get("live") === "poll" || typeof EventSource === "undefined") {
      startPolling();
      return;
    }
    stopLive();
    const url = "/api/v1/events" + (state.sku ? "?sku=" + encodeURIComponent(state.sku) : "");
    const source = new EventSource(url);
    state.live = source;
    source.addEventListener("open", () => setLive("sse"));
    source.addEventListener("channels", (event) => renderChannelHealth(JSON.parse(event.data)));
    source.addEventListener("stock", (event) => {
      const view = JSON.parse(event.data);
      if (view && view.sku) renderStock(view);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) startPolling();
    });
  }

  // ---- navigation --------------------------------------------------------------------

  async function selectSku(sku, replace) {
    state.sku = sku;
    state.seq = null;
    highlightSelected();
    const url = new URL(location.href);
    url.searchParams.set("sku", sku);
    url.hash = "";
    history[replace ? "replaceState" : "pushState"](null, "", url);
    try {
      renderStock(await getJson("/api/v1/stock/" + encodeURIComponent(sku)));
      showError(null);
    } catch (error) {
      showError(error);
    }
    if (!state.pollTimer) startLive();
  }

  function skuFromLocation() {
    const fromQuery = new URLSearchParams(location.search).get("sku");
    if (fromQuery) return fromQuery;
    const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
    return hash.get("sku");
  }

  function init() {
    let debounce = null;
    $("search").addEventListener("input", (event) => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        state.prefix = event.target.value.trim();
        loadSkus(true);
      }, 200);
    });
    $("search-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      state.prefix = $("search").value.trim();
      await loadSkus(true);
      const first = $("sku-list").querySelector("a");
      if (first) selectSku(first.dataset.sku);
    });
    $("more").addEventListener("click", () => loadSkus(false));
    window.addEventListener("popstate", () => {
      const sku = skuFromLocation();
      if (sku && sku !== state.sku) selectSku(sku, true);
    });

    // ?q=PREFIX searches and opens the first match; ?sku=SKU (or #sku=SKU) opens one SKU.
    const query = new URLSearchParams(location.search).get("q");
    const sku = skuFromLocation();
    loadReadiness();
    state.readyTimer = setInterval(loadReadiness, 5 * POLL_MS);
    getJson("/api/v1/channels").then(renderChannelHealth).catch(showError);
    if (query && !sku) {
      $("search").value = query;
      state.prefix = query;
      loadSkus(true).then(() => {
        const first = $("sku-list").querySelector("a");
        if (first) selectSku(first.dataset.sku, true);
        else startLive();
      });
      return;
    }
    loadSkus(true);
    if (sku) selectSku(sku, true);
    else startLive();
  }

  init();
})();
