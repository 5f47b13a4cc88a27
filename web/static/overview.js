// The market overview at /: every ticker on one screen, live over ONE EventSource (all tickers).
// A row per ticker: last price, change since the session's first candle, session volume, RSI(14),
// spread, a sparkline of the session's closes, the trading phase and the last signal; sortable;
// a click opens /ticker/X. A spike or crossover arriving live is highlighted at once, with a link
// to its candle on the ticker page (/ticker/X?at=<candle start>).
(() => {
  "use strict";
  const M = window.MOEX;
  const { t: tr, num, price, clock, ms, candleStart, mskDay } = M;

  const HEARTBEAT_S = Number(document.body.dataset.heartbeatS) || 15;
  const HISTORY = {
    candles_1m: 5000,      // the session's candles of every ticker (sparkline, open, volume)
    indicators_1m: 2000,
    signals: 500,
    anomalies: 500,
    liquidity_1s: 2000,
    market_status: 200,
  };
  const ALERT_KINDS = new Set(["golden_cross", "death_cross", "spike_up", "spike_down"]);
  const FLASH_MS = 15000;
  const MAX_ALERTS = 12;
  const MAX_SPARK = 600;

  const $ = (id) => document.getElementById(id);
  const tickers = new Map();   // ticker -> its figures
  const market = { phase: null };  // the market-wide phase (ticker "*")
  const alerts = [];           // newest first
  const dirty = new Set();
  let sort = { key: "ticker", dir: 1 };
  let live = null;
  let lastRowAt = null;
  let frameRequested = false;
  const counters = { renders: 0, lastRenderMs: 0 };

  function figures(ticker) {
    let f = tickers.get(ticker);
    if (!f) {
      f = { ticker, candles: [], day: null, rsi: null, rsiAt: -Infinity, spreadBps: null, spreadAt: -Infinity,
        phase: null, event: null, flashUntil: 0, row: null };
      tickers.set(ticker, f);
    }
    return f;
  }

  function noteRow(t) {
    if (isFinite(t) && (lastRowAt == null || t > lastRowAt)) lastRowAt = t;
  }

  // ---------- rows in ----------
  const apply = {
    candles_1m(row) {
      const t = ms(row.window_start);
      if (!isFinite(t) || !row.ticker) return;
      const f = figures(row.ticker);
      const day = mskDay(t);
      if (f.day != null && day < f.day) return;  // an earlier session
      if (f.day !== day) { f.day = day; f.candles = []; }  // a new session starts
      const candle = { t, open: Number(row.open), close: Number(row.close), volume: Number(row.volume) || 0 };
      const list = f.candles;
      let i = list.length - 1;
      while (i >= 0 && list[i].t > t) i--;
      if (i >= 0 && list[i].t === t) list[i] = candle; else list.splice(i + 1, 0, candle);
      if (list.length > MAX_SPARK) list.shift();
      noteRow(ms(row.window_end));
      dirty.add(row.ticker);
    },
    indicators_1m(row) {
      const t = ms(row.window_end);
      if (!row.ticker || !(t >= figures(row.ticker).rsiAt) || row.rsi_14 == null) return;
      Object.assign(figures(row.ticker), { rsi: row.rsi_14, rsiAt: t });
      dirty.add(row.ticker);
    },
    liquidity_1s(row) {
      const t = ms(row.window_end);
      if (!row.ticker || !(t >= figures(row.ticker).spreadAt)) return;
      Object.assign(figures(row.ticker), { spreadBps: row.spread_bps, spreadAt: t });
      dirty.add(row.ticker);
    },
    signals(row, isLive) { noteEvent(row, ms(row.ts), isLive); },
    anomalies(row, isLive) { noteEvent(row, ms(row.end_ts ?? row.start_ts), isLive); },
    market_status(row) {
      const t = ms(row.ts);
      const slot = row.ticker === "*" ? market : row.ticker ? figures(row.ticker) : null;
      if (!slot || (slot.phase && t < slot.phase.t)) return;
      slot.phase = { t, phase: row.phase };
      if (slot === market) for (const name of tickers.keys()) dirty.add(name); else dirty.add(row.ticker);
    },
  };

  function noteEvent(row, t, isLive) {
    if (!isFinite(t) || !row.ticker) return;
    const f = figures(row.ticker);
    const kind = String(row.kind ?? "");
    const event = { t, kind, ticker: row.ticker, candle: candleStart(t), id: row.event_id };
    if (!f.event || t >= f.event.t) f.event = event;
    if (isLive && ALERT_KINDS.has(kind)) {
      event.arrivedAt = Date.now();
      f.flashUntil = event.arrivedAt + FLASH_MS;
      alerts.unshift(event);
      if (alerts.length > MAX_ALERTS) alerts.length = MAX_ALERTS;
      renderAlerts();
      setTimeout(() => { dirty.add(row.ticker); scheduleRender(); }, FLASH_MS + 50);
    }
    dirty.add(row.ticker);
  }

  function onRow(stream, row, isLive) {
    const handler = apply[stream];
    if (!handler) return;
    handler(row, isLive);
    scheduleRender();
  }

  // ---------- derived values (also the sort keys) ----------
  function phaseOf(f) {
    const own = f.phase;
    const all = market.phase;
    return own && (!all || own.t >= all.t) ? own.phase : all ? all.phase : null;
  }

  function values(f) {
    const first = f.candles[0];
    const last = f.candles[f.candles.length - 1];
    const change = first && last && first.open ? (100 * (last.close - first.open)) / first.open : null;
    return {
      ticker: f.ticker,
      phase: phaseOf(f),
      last: last ? last.close : null,
      change,
      volume: f.candles.length ? f.candles.reduce((sum, c) => sum + c.volume, 0) : null,
      rsi: f.rsi,
      spread: f.spreadBps,
      event: f.event ? f.event.t : null,
    };
  }

  function candleLink(event) {
    return `ticker/${encodeURIComponent(event.ticker)}?at=${encodeURIComponent(new Date(event.candle).toISOString())}`;
  }

  // ---------- drawing ----------
  function scheduleRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  function sparkline(candles) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 120 28");
    svg.setAttribute("class", "spark");
    if (candles.length < 2) return svg;
    const closes = candles.map((c) => c.close);
    const lo = Math.min(...closes, candles[0].open);
    const hi = Math.max(...closes, candles[0].open);
    const span = hi - lo || 1;
    const x = (i) => ((i / (closes.length - 1)) * 118 + 1).toFixed(1);
    const y = (v) => (27 - ((v - lo) / span) * 26).toFixed(1);
    const base = document.createElementNS(svg.namespaceURI, "line");
    Object.entries({ x1: 0, x2: 120, y1: y(candles[0].open), y2: y(candles[0].open), class: "spark-open" })
      .forEach(([k, v]) => base.setAttribute(k, v));
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", closes.map((v, i) => `${x(i)},${y(v)}`).join(" "));
    line.setAttribute("class", closes[closes.length - 1] >= candles[0].open ? "spark-up" : "spark-down");
    svg.append(base, line);
    return svg;
  }

  function cell(text, className = "") {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderRow(f) {
    const v = values(f);
    const rowEl = f.row || document.createElement("tr");
    f.row = rowEl;
    rowEl.dataset.ticker = f.ticker;
    rowEl.tabIndex = 0;
    rowEl.title = `${f.ticker}: ${tr("col.ticker.title")}`;
    const flashing = Date.now() < f.flashUntil;
    rowEl.className = flashing ? "flash" : "";
    const link = document.createElement("a");
    link.href = `ticker/${encodeURIComponent(f.ticker)}`;
    link.textContent = f.ticker;
    const tickerCell = document.createElement("td");
    tickerCell.className = "ticker";
    tickerCell.append(link);
    const phase = cell(M.phaseName(v.phase), `phase phase-${v.phase ?? "none"}`);
    const change = cell(v.change == null ? "—" : `${num(v.change, 2, true)} %`,
      `num ${v.change > 0 ? "up" : v.change < 0 ? "down" : ""}`);
    const rsi = cell(num(v.rsi, 1), `num ${v.rsi > 70 ? "down" : v.rsi < 30 && v.rsi != null ? "up" : ""}`);
    const spark = document.createElement("td");
    spark.className = "spark-cell";
    spark.append(sparkline(f.candles));
    const event = document.createElement("td");
    event.className = "event";
    if (f.event) {
      const time = document.createElement("time");
      time.textContent = clock(f.event.t);
      const kind = document.createElement("a");
      kind.className = `kind kind-${f.event.kind}`;
      kind.textContent = M.kindName(f.event.kind);
      kind.href = candleLink(f.event);
      event.append(time, " ", kind);
    } else {
      event.textContent = "—";
    }
    rowEl.replaceChildren(tickerCell, phase, cell(price(v.last), "num last"), change,
      cell(num(v.volume, 0), "num"), rsi, cell(v.spread == null ? "—" : `${num(v.spread, 1)} ${tr("unit.bps")}`, "num"),
      spark, event);
    return rowEl;
  }

  function sortedFigures() {
    const list = [...tickers.values()].map((f) => [f, values(f)]);
    list.sort(([fa, a], [fb, b]) => {
      const x = a[sort.key];
      const y = b[sort.key];
      if (x == null && y == null) return fa.ticker.localeCompare(fb.ticker);
      if (x == null) return 1;  // blanks last, whichever the direction
      if (y == null) return -1;
      const order = typeof x === "string" ? x.localeCompare(y) : x - y;
      return order * sort.dir || fa.ticker.localeCompare(fb.ticker);
    });
    return list.map(([f]) => f);
  }

  function render() {
    frameRequested = false;
    const started = performance.now();
    for (const name of dirty) renderRow(figures(name));
    dirty.clear();
    const body = $("rows");
    const order = sortedFigures().map((f) => f.row);
    if (order.some((row, i) => body.children[i] !== row) || body.children.length !== order.length) body.replaceChildren(...order);
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.setAttribute("aria-sort", th.dataset.sort === sort.key ? (sort.dir > 0 ? "ascending" : "descending") : "none");
    }
    $("notice").hidden = tickers.size > 0;
    $("notice").textContent = tr("tickers.none");
    $("last-update").textContent = lastRowAt == null ? tr("data.none") : tr("data.last", { time: clock(lastRowAt) });
    counters.renders += 1;
    counters.lastRenderMs = performance.now() - started;
    publishState();
  }

  function renderAlerts() {
    const items = alerts.map((event) => {
      const li = document.createElement("li");
      li.className = `alert kind-${event.kind}`;
      const time = document.createElement("time");
      time.textContent = clock(event.t);
      const link = document.createElement("a");
      link.href = candleLink(event);
      link.title = tr("alert.open");
      link.textContent = `${event.ticker} · ${M.kindName(event.kind)}`;
      li.append(time, " ", link);
      return li;
    });
    $("alerts").replaceChildren(...items);
    $("alerts-none").hidden = alerts.length > 0;
  }

  // What the page shows, for tests: published after each drawing, so it matches the screen.
  function publishState() {
    window.dashboardState = {
      page: "overview", lang: M.lang, connection: live ? live.connection : "reconnecting",
      events: live ? live.events : 0, gaps: live ? live.gaps : 0,
      tickers: [...tickers.values()].map((f) => ({ ticker: f.ticker, ...values(f), candles: f.candles.length,
        flash: Date.now() < f.flashUntil, event_kind: f.event ? f.event.kind : null })),
      order: sortedFigures().map((f) => f.ticker),
      alerts: alerts.map((a) => ({ ticker: a.ticker, kind: a.kind, id: a.id, t: a.t, arrivedAt: a.arrivedAt, href: candleLink(a) })),
      job: { ...M.job }, ...counters,
    };
  }

  // ---------- interaction ----------
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.tabIndex = 0;
    const choose = () => {
      sort = sort.key === th.dataset.sort ? { key: sort.key, dir: -sort.dir } : { key: th.dataset.sort, dir: th.dataset.sort === "ticker" || th.dataset.sort === "phase" ? 1 : -1 };
      scheduleRender();
    };
    th.addEventListener("click", choose);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") choose(); });
    th.querySelector("span").insertAdjacentHTML("afterend", '<i class="sort-mark" aria-hidden="true"></i>');
    th.dataset.i18nTitle = th.dataset.i18nTitle || "sort.title";
  }
  $("rows").addEventListener("click", (e) => {
    if (e.target.closest("a")) return;  // links go where they point
    const rowEl = e.target.closest("tr[data-ticker]");
    if (rowEl) location.assign(new URL(`ticker/${encodeURIComponent(rowEl.dataset.ticker)}`, document.baseURI));
  });
  $("rows").addEventListener("keydown", (e) => {
    const rowEl = e.target.closest("tr[data-ticker]");
    if (rowEl && e.key === "Enter") location.assign(new URL(`ticker/${encodeURIComponent(rowEl.dataset.ticker)}`, document.baseURI));
  });

  async function boot() {
    M.translatePage();
    document.title = tr("title.overview");
    M.showConnection($("connection"), "reconnecting");
    renderAlerts();
    publishState();
    M.watchHealth();
    try {
      const streams = await M.servedStreams(Object.keys(HISTORY));
      const history = Object.fromEntries(streams.map((name) => [name, HISTORY[name]]));
      live = new M.LiveStream({
        history, ticker: null, heartbeatS: HEARTBEAT_S, onRow,
        onGap: () => scheduleRender(),
        onState: (state) => { M.showConnection($("connection"), state); scheduleRender(); },
      });
      await live.start();
      scheduleRender();
    } catch (err) {
      console.warn("gateway not answering:", err.message);
      setTimeout(boot, 3000);
    }
  }

  boot();
})();
