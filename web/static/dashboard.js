// MOEX live dashboard: history from /api/streams/{name}, then ONE EventSource for every stream.
// Plain script, no build step. Rows arrive with UTC ISO-8601 instants; everything on screen is
// Moscow time (UTC+3, no daylight saving since 2014). Events are applied to in-memory arrays at
// once and drawn at most once per animation frame.
(() => {
  "use strict";

  const HEARTBEAT_S = Number(document.body.dataset.heartbeatS) || 15;
  const MSK_MS = 3 * 3600 * 1000;
  const MINUTE_MS = 60 * 1000;
  const MAX_CANDLES = 500;
  const MAX_MARKERS = 200;
  const MAX_FEED = 60;
  const MAX_SPREAD_POINTS = 300;
  const HISTORY = {
    candles_1m: MAX_CANDLES,
    indicators_1m: MAX_CANDLES,
    signals: 100,
    anomalies: 100,
    liquidity_1s: MAX_SPREAD_POINTS,
    market_status: 20,
  };
  const token = new URLSearchParams(location.search).get("token");

  const $ = (id) => document.getElementById(id);
  const els = {
    ticker: $("ticker"), phase: $("phase"), lastUpdate: $("last-update"), connection: $("connection"),
    chart: $("chart"), spreadChart: $("spread-chart"), feed: $("feed"), notice: $("notice"),
  };

  let columns = {};     // stream -> the columns the page reads (static/columns.json)
  let available = [];   // stream names this gateway serves, among HISTORY's
  let generation = 0;   // bumps on ticker change; late answers for an old ticker are dropped
  let source = null;    // the EventSource
  let retryTimer = null;
  let retryDelay = 1000;
  let lastEventAt = 0;
  let lastEventId = "";
  let connection = "reconnecting";
  let frameRequested = false;
  let data = emptyData();
  const counters = { events: 0, renders: 0, lastRenderMs: 0, gaps: 0 };

  function emptyData() {
    return {
      candles: [],      // {t: window_start ms, open, high, low, close, volume}, ascending t
      indicators: [],   // {t: candle start ms, ...indicator fields}, ascending t
      markers: [],      // {t, y, kind}
      feed: [],         // {t, kind, text}, newest first
      spread: [],       // {t, bps}
      liquidity: null,
      phases: { own: null, market: null },
      lastRowAt: null,
      dirty: { chart: true, side: true, feed: true },
    };
  }

  // ---------- time ----------
  const ms = (iso) => (iso == null ? NaN : Date.parse(iso));
  // Plotly draws date strings as they are: hand it Moscow wall-clock time.
  const mskAxis = (t) => new Date(t + MSK_MS).toISOString().slice(0, 19).replace("T", " ");
  const mskClock = (t) => new Date(t + MSK_MS).toISOString().slice(11, 19);
  // The 1-minute candle an instant belongs to; an instant equal to a window end is that window's.
  const candleStart = (t) => Math.floor((t - 1) / MINUTE_MS) * MINUTE_MS;
  const num = (v, digits = 2) => (v == null || !isFinite(v) ? "—" : Number(v).toLocaleString("ru-RU", {
    minimumFractionDigits: digits, maximumFractionDigits: digits }));

  // ---------- applying rows ----------
  function upsertByTime(list, item, max) {
    const last = list[list.length - 1];
    if (!last || item.t > last.t) {
      list.push(item);
    } else {
      let i = list.length - 1;
      while (i >= 0 && list[i].t > item.t) i--;
      if (i >= 0 && list[i].t === item.t) list[i] = item;
      else list.splice(i + 1, 0, item);
    }
    if (list.length > max) list.splice(0, list.length - max);
  }

  function noteRow(t) {
    if (isFinite(t) && (data.lastRowAt == null || t > data.lastRowAt)) data.lastRowAt = t;
  }

  const apply = {
    candles_1m(row) {
      const t = ms(row.window_start);
      if (!isFinite(t)) return;
      upsertByTime(data.candles, { t, open: row.open, high: row.high, low: row.low, close: row.close,
        volume: row.volume }, MAX_CANDLES);
      noteRow(ms(row.window_end));
      data.dirty.chart = true;
    },
    indicators_1m(row) {
      const end = ms(row.window_end);
      if (!isFinite(end)) return;
      upsertByTime(data.indicators, { ...row, t: end - MINUTE_MS }, MAX_CANDLES);
      data.dirty.chart = true;
    },
    signals(row) {
      const t = ms(row.ts);
      const kind = String(row.kind ?? "signal");
      if (!isFinite(t)) return;
      if (kind === "golden_cross" || kind === "death_cross") {
        addMarker({ t: candleStart(t), y: row.close ?? closeAt(candleStart(t)), kind });
      }
      const parts = [];
      if (row.close != null) parts.push(`₽${num(row.close)}`);
      if (row.rsi_14 != null) parts.push(`RSI ${num(row.rsi_14, 1)}`);
      if (kind.endsWith("cross") && row.ema_12 != null) parts.push(`EMA12 ${num(row.ema_12)}`);
      addFeed({ t, kind, text: parts.join(" · ") });
    },
    anomalies(row) {
      const t = ms(row.end_ts ?? row.start_ts);
      const kind = String(row.kind ?? "anomaly");
      if (!isFinite(t)) return;
      if (kind === "spike_up" || kind === "spike_down") {
        addMarker({ t: candleStart(t), y: row.end_price ?? closeAt(candleStart(t)), kind });
      }
      const parts = [];
      if (row.change_pct != null) parts.push(`${row.change_pct > 0 ? "+" : ""}${num(row.change_pct)}%`);
      if (kind === "volume" && row.volume != null) parts.push(`vol ${num(row.volume, 0)}`);
      addFeed({ t, kind, text: parts.join(" · ") });
    },
    liquidity_1s(row) {
      const t = ms(row.window_end);
      if (!isFinite(t)) return;
      if (!data.liquidity || t >= data.liquidity.t) data.liquidity = { ...row, t };
      if (row.spread_bps != null) upsertByTime(data.spread, { t, bps: row.spread_bps }, MAX_SPREAD_POINTS);
      data.dirty.side = true;
    },
    market_status(row) {
      const t = ms(row.ts);
      const slot = row.ticker === "*" ? "market" : "own";
      const current = data.phases[slot];
      if (!current || !(t < current.t)) data.phases[slot] = { t, phase: row.phase };
      data.dirty.side = true;
    },
  };

  function closeAt(t) {
    const c = data.candles.find((candle) => candle.t === t);
    return c ? c.close : null;
  }

  function addMarker(marker) {
    if (marker.y == null) return;
    data.markers.push(marker);
    if (data.markers.length > MAX_MARKERS) data.markers.shift();
    data.dirty.chart = true;
  }

  function addFeed(item) {
    let i = 0;
    while (i < data.feed.length && data.feed[i].t > item.t) i++;
    data.feed.splice(i, 0, item);
    if (data.feed.length > MAX_FEED) data.feed.length = MAX_FEED;
    data.dirty.feed = true;
  }

  // Only the columns web/static/columns.json declares reach the handlers: that file is the
  // page's schema, checked against the job's catalog by tests/test_web_columns.py.
  function pick(stream, row) {
    const picked = {};
    for (const column of columns[stream] || []) picked[column] = row[column];
    return picked;
  }

  function missingColumns(catalog) {
    const missing = [];
    for (const spec of catalog) {
      const have = new Set(spec.columns.map((c) => c.name));
      if (have.size === 0) continue;  // a catalog without types lists no columns
      for (const column of columns[spec.name] || []) if (!have.has(column)) missing.push(`${spec.name}.${column}`);
    }
    return missing;
  }

  function applyRow(stream, row) {
    const handler = apply[stream];
    if (!handler || row == null || typeof row !== "object") return;
    handler(pick(stream, row));
    scheduleRender();
  }

  // ---------- drawing ----------
  function scheduleRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  const AXIS = { gridcolor: "#222a33", zerolinecolor: "#2c3641", linecolor: "#2c3641" };

  function layout() {
    const shapes = [30, 70].map((level) => ({
      type: "line", xref: "paper", x0: 0, x1: 1, yref: "y3", y0: level, y1: level,
      line: { color: level === 70 ? "#ef5350" : "#26a69a", width: 1, dash: "dot" },
    }));
    return {
      uirevision: els.ticker.value,   // keeps the user's zoom across updates of one ticker
      paper_bgcolor: "#0f1419", plot_bgcolor: "#0f1419",
      font: { color: "#d5dde5", size: 11 },
      margin: { l: 56, r: 16, t: 10, b: 34 },
      showlegend: true,
      legend: { orientation: "h", traceorder: "normal", x: 0, y: 1.0, yanchor: "bottom", font: { size: 10 } },
      hovermode: "x",
      xaxis: { ...AXIS, type: "date", anchor: "y4", rangeslider: { visible: false },
        title: { text: "Moscow time (UTC+3)", font: { size: 10 } } },
      yaxis: { ...AXIS, domain: [0.47, 1], title: { text: "₽" } },
      yaxis2: { ...AXIS, domain: [0.35, 0.45], title: { text: "volume" } },
      yaxis3: { ...AXIS, domain: [0.18, 0.33], range: [0, 100], title: { text: "RSI 14" } },
      yaxis4: { ...AXIS, domain: [0, 0.16], title: { text: "MACD" } },
      shapes,
    };
  }

  // Markers sit just outside their candle (below it for golden crosses and falls, above for
  // death crosses and jumps) so they do not hide the body; without the candle, at the price.
  const MARKER_SIDE = { golden_cross: -1, spike_down: -1, death_cross: 1, spike_up: 1 };

  function markerTrace(kind, name, symbol, color, candlesByTime) {
    const points = data.markers.filter((m) => m.kind === kind);
    const side = MARKER_SIDE[kind];
    const y = points.map((m) => {
      const candle = candlesByTime.get(m.t);
      if (!candle) return m.y;
      const edge = side > 0 ? candle.high : candle.low;
      return edge * (1 + side * 0.0015);
    });
    return { type: "scatter", mode: "markers", name, x: points.map((m) => mskAxis(m.t)), y,
      marker: { symbol, size: 11, color, line: { color: "#0f1419", width: 1 } }, yaxis: "y" };
  }

  function line(name, field, color, yaxis, extra = {}) {
    const rows = data.indicators;
    return { type: "scatter", mode: "lines", name, x: rows.map((r) => mskAxis(r.t)), y: rows.map((r) => r[field]),
      line: { color, width: 1.3 }, yaxis, connectgaps: false, ...extra };
  }

  function chartTraces() {
    const c = data.candles;
    const x = c.map((k) => mskAxis(k.t));
    const ind = data.indicators;
    const byTime = new Map(c.map((k) => [k.t, k]));
    return [
      { type: "candlestick", name: els.ticker.value || "price", x, open: c.map((k) => k.open), high: c.map((k) => k.high),
        low: c.map((k) => k.low), close: c.map((k) => k.close), yaxis: "y",
        increasing: { line: { color: "#26a69a" } }, decreasing: { line: { color: "#ef5350" } } },
      line("SMA 20", "sma_20", "#f0b429", "y"),
      line("EMA 12", "ema_12", "#4fc3f7", "y"),
      line("EMA 26", "ema_26", "#ba68c8", "y"),
      line("BB upper", "bb_upper", "rgba(144,164,174,.8)", "y", { line: { color: "rgba(144,164,174,.8)", width: 1, dash: "dot" } }),
      line("BB lower", "bb_lower", "rgba(144,164,174,.8)", "y", { line: { color: "rgba(144,164,174,.8)", width: 1, dash: "dot" },
        fill: "tonexty", fillcolor: "rgba(144,164,174,.07)" }),
      markerTrace("golden_cross", "golden cross", "triangle-up", "#26a69a", byTime),
      markerTrace("death_cross", "death cross", "triangle-down", "#ef5350", byTime),
      markerTrace("spike_up", "spike up", "star", "#f0b429", byTime),
      markerTrace("spike_down", "spike down", "star", "#ff7043", byTime),
      { type: "bar", name: "volume", x, y: c.map((k) => k.volume), yaxis: "y2", showlegend: false,
        marker: { color: c.map((k) => (k.close >= k.open ? "rgba(38,166,154,.6)" : "rgba(239,83,80,.6)")) } },
      line("RSI 14", "rsi_14", "#f0b429", "y3", { showlegend: false }),
      line("MACD", "macd", "#4fc3f7", "y4", { showlegend: false }),
      line("signal", "macd_signal", "#ff7043", "y4", { showlegend: false }),
      { type: "bar", name: "histogram", x: ind.map((r) => mskAxis(r.t)), y: ind.map((r) => r.macd_hist), yaxis: "y4",
        showlegend: false, marker: { color: ind.map((r) => ((r.macd_hist ?? 0) >= 0 ? "rgba(38,166,154,.7)" : "rgba(239,83,80,.7)")) } },
    ];
  }

  const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function render() {
    frameRequested = false;
    const started = performance.now();
    if (data.dirty.chart) {
      data.dirty.chart = false;
      Plotly.react(els.chart, chartTraces(), layout(), PLOT_CONFIG);
      els.notice.hidden = data.candles.length > 0;
      els.notice.textContent = `waiting for 1-minute candles of ${els.ticker.value || "a ticker"}…`;
    }
    if (data.dirty.side) {
      data.dirty.side = false;
      renderLiquidity();
      renderPhase();
    }
    if (data.dirty.feed) {
      data.dirty.feed = false;
      renderFeed();
    }
    els.lastUpdate.textContent = data.lastRowAt == null ? "no data yet" : `last row ${mskClock(data.lastRowAt)} MSK`;
    counters.renders += 1;
    counters.lastRenderMs = performance.now() - started;
    publishState();
  }

  function renderLiquidity() {
    const liq = data.liquidity;
    const set = (id, text) => { $(id).textContent = text; };
    if (liq) {
      set("liq-time", mskClock(liq.t));
      set("liq-spread-bps", `${num(liq.spread_bps, 1)} bps`);
      set("liq-spread", num(liq.spread, 2));
      set("liq-mid", num(liq.mid, 2));
      set("liq-imbalance", liq.imbalance == null ? "—" : `${liq.imbalance > 0 ? "+" : ""}${num(liq.imbalance, 2)}`);
      const depths = [["bid5", liq.bid_depth_5], ["ask5", liq.ask_depth_5], ["bid10", liq.bid_depth_10], ["ask10", liq.ask_depth_10]];
      const biggest = Math.max(1, ...depths.map(([, v]) => Number(v) || 0));
      for (const [key, value] of depths) {
        set(`liq-${key}`, num(value, 0));
        $(`liq-${key}-bar`).style.width = `${(100 * (Number(value) || 0)) / biggest}%`;
      }
    }
    Plotly.react(els.spreadChart, [{ type: "scatter", mode: "lines", x: data.spread.map((p) => mskAxis(p.t)),
      y: data.spread.map((p) => p.bps), line: { color: "#f0b429", width: 1.2 }, name: "spread bps" }], {
      uirevision: els.ticker.value, paper_bgcolor: "#151b23", plot_bgcolor: "#151b23", font: { color: "#d5dde5", size: 10 },
      margin: { l: 36, r: 6, t: 4, b: 22 }, showlegend: false,
      xaxis: { ...AXIS, type: "date", tickformat: "%H:%M" }, yaxis: { ...AXIS, title: { text: "bps" } },
    }, { displayModeBar: false, responsive: true });
  }

  function renderPhase() {
    const { own, market } = data.phases;
    const chosen = own && (!market || own.t >= market.t) ? own : market;
    els.phase.className = `chip${chosen ? ` phase-${chosen.phase}` : ""}`;
    els.phase.textContent = chosen ? `phase ${String(chosen.phase).replace(/_/g, " ")}` : "phase —";
  }

  function renderFeed() {
    const items = data.feed.map((item) => {
      const li = document.createElement("li");
      const time = document.createElement("time");
      time.textContent = mskClock(item.t);
      const kind = document.createElement("span");
      kind.className = `kind kind-${item.kind}`;
      kind.textContent = String(item.kind).replace(/_/g, " ");
      const detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = item.text;
      li.append(time, kind, detail);
      return li;
    });
    els.feed.replaceChildren(...items);
  }

  function setConnection(next) {
    if (connection === next) return;
    connection = next;
    els.connection.textContent = next;
    els.connection.className = `conn conn-${next}`;
    publishState();
  }

  function publishState() {
    window.dashboardState = {
      ticker: els.ticker.value, connection, lastEventId,
      candles: data.candles.length, indicators: data.indicators.length, markers: data.markers.length,
      feed: data.feed.length, spreadPoints: data.spread.length, liquidity: data.liquidity ? 1 : 0,
      phase: els.phase.textContent, streams: available.slice(), ...counters,
    };
  }

  // ---------- network ----------
  function apiUrl(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [key, value] of Object.entries(params)) if (value != null && value !== "") url.searchParams.set(key, value);
    if (token) url.searchParams.set("token", token);
    return url;
  }

  async function getJson(path, params) {
    const response = await fetch(apiUrl(path, params), { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  async function loadTickers() {
    const { tickers } = await getJson("api/tickers");
    const wanted = els.ticker.value || new URLSearchParams(location.search).get("ticker") || (tickers.includes("SBER") ? "SBER" : tickers[0]);
    const names = tickers.includes(wanted) || !wanted ? tickers : [wanted, ...tickers];
    if (names.join() !== [...els.ticker.options].map((o) => o.value).join()) {
      els.ticker.replaceChildren(...names.map((name) => new Option(name, name)));
    }
    if (wanted) els.ticker.value = wanted;
    return els.ticker.value;
  }

  async function start() {
    const mine = ++generation;
    stopStream();
    data = emptyData();
    lastEventId = "";
    scheduleRender();
    const ticker = els.ticker.value;
    if (!ticker || available.length === 0) return;
    const answers = await Promise.all(available.map((name) =>
      getJson(`api/streams/${name}`, { ticker, limit: HISTORY[name] }).catch((err) => {
        console.warn(`history of ${name}:`, err.message);
        return null;
      })));
    if (mine !== generation) return;
    const cursors = [];
    answers.forEach((answer, i) => {
      if (!answer) return;
      for (const row of answer.rows) applyRow(available[i], row);
      if (answer.cursor) cursors.push(answer.cursor);
    });
    // Resume exactly after the history: no row between the two requests is lost or repeated.
    lastEventId = cursors.join(",");
    connect();
  }

  function connect() {
    stopStream();
    const url = apiUrl("api/events", { streams: available.join(","), ticker: els.ticker.value, last_event_id: lastEventId });
    const es = new EventSource(url);
    source = es;
    const mine = generation;
    const seen = (event) => {
      if (source !== es || mine !== generation) return false;
      lastEventAt = Date.now();
      if (event.lastEventId) lastEventId = event.lastEventId;
      if (es.readyState === EventSource.OPEN) setConnection("live");
      return true;
    };
    es.onopen = () => { retryDelay = 1000; seen({}); };
    es.onerror = () => {
      if (source !== es) return;
      setConnection("reconnecting");
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (HTTP error such as 503 when the gateway is full): retry ourselves.
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    };
    es.addEventListener("ready", seen);
    es.addEventListener("heartbeat", seen);
    es.addEventListener("closed", seen);
    es.addEventListener("gap", (event) => {
      if (!seen(event)) return;
      counters.gaps += 1;
      const gap = JSON.parse(event.data);
      addFeed({ t: Date.now(), kind: "gap", text: `${gap.stream}: rows ${gap.from}–${gap.to - 1} expired` });
      scheduleRender();
    });
    for (const name of available) {
      es.addEventListener(name, (event) => {
        if (!seen(event)) return;
        counters.events += 1;
        applyRow(name, JSON.parse(event.data));
      });
    }
  }

  function stopStream() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = null;
  }

  // "stale": connected, yet not even a heartbeat for two intervals.
  setInterval(() => {
    if (connection === "live" && Date.now() - lastEventAt > 2 * HEARTBEAT_S * 1000) setConnection("stale");
  }, 1000);

  els.ticker.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("ticker", els.ticker.value);
    history.replaceState(null, "", url);
    start();
  });

  async function boot() {
    publishState();
    try {
      columns = (await getJson("static/columns.json")).streams;
      const { streams } = await getJson("api/streams");
      const missing = missingColumns(streams);
      if (missing.length) console.warn(`the job's catalog lacks columns this page reads: ${missing.join(", ")}`);
      const served = new Set(streams.map((s) => s.name));
      available = Object.keys(HISTORY).filter((name) => served.has(name));
      const ticker = await loadTickers();
      if (!ticker) {
        els.notice.hidden = false;
        els.notice.textContent = "no tickers yet: waiting for the first rows…";
        setTimeout(boot, 3000);
        return;
      }
      setInterval(() => loadTickers().catch(() => {}), 30000);
      await start();
    } catch (err) {
      console.warn("gateway not answering:", err.message);
      setConnection("reconnecting");
      setTimeout(boot, 3000);
    }
  }

  boot();
})();
