// The ticker page at /ticker/X: history from /api/streams/{name}, then ONE EventSource for every
// stream of the ticker. Rows arrive with UTC ISO-8601 instants; everything on screen is Moscow
// time. Rows are applied to in-memory arrays at once and drawn at most once per animation frame.
//
// What the page shows is a list of panels; each names the streams it reads (with how many rows of
// history) and gets their rows. A new stream's panel (super candles, a strategy's equity) is one
// more entry in PANELS: `{ id, streams: { name: { history, apply(row) } }, mount(aside), render() }`,
// plus its columns in static/columns.json.
(() => {
  "use strict";
  const M = window.MOEX;
  const { t: tr, num, price, clock, shortClock, ms, mskAxis, candleStart, MINUTE_MS } = M;

  const HEARTBEAT_S = Number(document.body.dataset.heartbeatS) || 15;
  const TICKER = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const FOCUS = M.ms(new URLSearchParams(location.search).get("at"));  // a candle to show (alerts link here)
  const MAX_CANDLES = 500;
  const MAX_MARKERS = 200;
  const MAX_FEED = 60;
  const MAX_SPREAD_POINTS = 300;

  const $ = (id) => document.getElementById(id);
  const els = { ticker: $("ticker"), phase: $("phase"), lastUpdate: $("last-update"), connection: $("connection"),
    chart: $("chart"), notice: $("notice"), aside: $("panels") };

  let live = null;
  let lastRowAt = null;
  let frameRequested = false;
  const counters = { renders: 0, lastRenderMs: 0 };

  function noteRow(t) {
    if (isFinite(t) && (lastRowAt == null || t > lastRowAt)) lastRowAt = t;
  }

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

  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value; else if (key.startsWith("data-")) node.setAttribute(key, value); else node[key] = value;
    }
    node.append(...children);
    return node;
  };

  // ---------- the chart: candles, indicators and the markers of signals and anomalies ----------
  const chart = {
    candles: [],      // {t: window_start ms, open, high, low, close, volume}, ascending t
    indicators: [],   // {t: candle start ms, ...indicator fields}, ascending t
    markers: [],      // {t, y, kind}
    dirty: true,
    addMarker(marker) {
      if (marker.y == null) return;
      this.markers.push(marker);
      if (this.markers.length > MAX_MARKERS) this.markers.shift();
      this.dirty = true;
    },
    closeAt(t) {
      const c = this.candles.find((candle) => candle.t === t);
      return c ? c.close : null;
    },
  };

  const chartPanel = {
    id: "chart",
    streams: {
      candles_1m: { history: MAX_CANDLES, apply(row) {
        const t = ms(row.window_start);
        if (!isFinite(t)) return;
        upsertByTime(chart.candles, { t, open: row.open, high: row.high, low: row.low, close: row.close,
          volume: row.volume }, MAX_CANDLES);
        noteRow(ms(row.window_end));
        chart.dirty = true;
      } },
      indicators_1m: { history: MAX_CANDLES, apply(row) {
        const end = ms(row.window_end);
        if (!isFinite(end)) return;
        upsertByTime(chart.indicators, { ...row, t: end - MINUTE_MS }, MAX_CANDLES);
        chart.dirty = true;
      } },
    },
    mount() {},
    render() {
      if (!chart.dirty) return;
      chart.dirty = false;
      Plotly.react(els.chart, chartTraces(), layout(), PLOT_CONFIG);
      els.notice.hidden = chart.candles.length > 0;
      els.notice.textContent = tr("chart.waiting", { ticker: TICKER });
    },
  };

  // ---------- the side panels ----------
  const liquidity = { last: null, spread: [], dirty: true };
  const liquidityPanel = {
    id: "liquidity",
    streams: {
      liquidity_1s: { history: MAX_SPREAD_POINTS, apply(row) {
        const t = ms(row.window_end);
        if (!isFinite(t)) return;
        if (!liquidity.last || t >= liquidity.last.t) liquidity.last = { ...row, t };
        if (row.spread_bps != null) upsertByTime(liquidity.spread, { t, bps: row.spread_bps }, MAX_SPREAD_POINTS);
        liquidity.dirty = true;
      } },
    },
    mount(aside) {
      const figure = (key, id) => el("div", { "data-i18n-title": `${key}.title` }, el("dt", { "data-i18n": key }), el("dd", { id }, "—"));
      const depth = (key, id, side) => el("div", { class: "depth-row", "data-i18n-title": "liq.depth.title" },
        el("span", { "data-i18n": key }), el("span", { class: `bar ${side}` }, el("i", { id: `${id}-bar` })), el("span", { id }, "—"));
      aside.append(el("section", { class: "panel", id: "liquidity" },
        el("h2", {}, el("span", { "data-i18n": "liq" }), " ", el("small", { class: "muted", id: "liq-time", "data-i18n-title": "liq.time.title" })),
        el("dl", { class: "figures" }, figure("liq.spread_bps", "liq-spread-bps"), figure("liq.spread", "liq-spread"),
          figure("liq.mid", "liq-mid"), figure("liq.imbalance", "liq-imbalance")),
        el("div", { class: "depth" }, depth("liq.bid5", "liq-bid5", "bid"), depth("liq.ask5", "liq-ask5", "ask"),
          depth("liq.bid10", "liq-bid10", "bid"), depth("liq.ask10", "liq-ask10", "ask")),
        el("div", { id: "spread-chart", "data-i18n-aria": "liq.chart.title" })));
    },
    render() {
      if (!liquidity.dirty) return;
      liquidity.dirty = false;
      const liq = liquidity.last;
      const set = (id, text) => { $(id).textContent = text; };
      if (liq) {
        set("liq-time", clock(liq.t));
        set("liq-spread-bps", `${num(liq.spread_bps, 1)} ${tr("unit.bps")}`);
        set("liq-spread", num(liq.spread, 2));
        set("liq-mid", price(liq.mid));
        set("liq-imbalance", num(liq.imbalance, 2, true));
        const depths = [["bid5", liq.bid_depth_5], ["ask5", liq.ask_depth_5], ["bid10", liq.bid_depth_10], ["ask10", liq.ask_depth_10]];
        const biggest = Math.max(1, ...depths.map(([, v]) => Number(v) || 0));
        for (const [key, value] of depths) {
          set(`liq-${key}`, num(value, 0));
          $(`liq-${key}-bar`).style.width = `${(100 * (Number(value) || 0)) / biggest}%`;
        }
      }
      Plotly.react($("spread-chart"), [{ type: "scatter", mode: "lines", x: liquidity.spread.map((p) => mskAxis(p.t)),
        y: liquidity.spread.map((p) => p.bps), line: { color: "#f0b429", width: 1.2 }, name: tr("unit.bps"),
        hovertemplate: `%{y:.1f} ${tr("unit.bps")}<extra></extra>` }], {
        uirevision: TICKER, paper_bgcolor: "#151b23", plot_bgcolor: "#151b23", font: { color: "#d5dde5", size: 10 },
        margin: { l: 36, r: 6, t: 4, b: 22 }, showlegend: false, separators: M.lang === "ru" ? ",\u202f" : ".,",
        xaxis: { ...AXIS, type: "date", tickformat: "%H:%M", hoverformat: "%H:%M:%S" }, yaxis: { ...AXIS, title: { text: tr("unit.bps") } },
      }, { displayModeBar: false, responsive: true });
    },
  };

  const feed = { items: [], dirty: true };  // {t, kind, text}, newest first
  function addFeed(item) {
    let i = 0;
    while (i < feed.items.length && feed.items[i].t > item.t) i++;
    feed.items.splice(i, 0, item);
    if (feed.items.length > MAX_FEED) feed.items.length = MAX_FEED;
    feed.dirty = true;
  }

  const feedPanel = {
    id: "feed",
    streams: {
      signals: { history: 100, apply(row) {
        const t = ms(row.ts);
        const kind = String(row.kind ?? "signal");
        if (!isFinite(t)) return;
        if (kind === "golden_cross" || kind === "death_cross") {
          chart.addMarker({ t: candleStart(t), y: row.close ?? chart.closeAt(candleStart(t)), kind });
        }
        const parts = [];
        if (row.close != null) parts.push(`${price(row.close)} ₽`);
        if (row.rsi_14 != null) parts.push(`RSI ${num(row.rsi_14, 1)}`);
        if (kind.endsWith("cross") && row.ema_12 != null) parts.push(`EMA 12 ${price(row.ema_12)}`);
        addFeed({ t, kind, text: parts.join(" · ") });
      } },
      anomalies: { history: 100, apply(row) {
        const t = ms(row.end_ts ?? row.start_ts);
        const kind = String(row.kind ?? "anomaly");
        if (!isFinite(t)) return;
        if (kind === "spike_up" || kind === "spike_down") {
          chart.addMarker({ t: candleStart(t), y: row.end_price ?? chart.closeAt(candleStart(t)), kind });
        }
        const parts = [];
        if (row.change_pct != null) parts.push(`${num(row.change_pct, 2, true)} %`);
        if (kind === "volume" && row.volume != null) parts.push(`${num(row.volume, 0)} ${tr("col.volume").toLowerCase()}`);
        addFeed({ t, kind, text: parts.join(" · ") });
      } },
    },
    mount(aside) {
      aside.append(el("section", { class: "panel feed-panel" }, el("h2", { "data-i18n": "feed" }), el("ol", { id: "feed", class: "feed" })));
    },
    render() {
      if (!feed.dirty) return;
      feed.dirty = false;
      $("feed").replaceChildren(...feed.items.map((item) => el("li", {},
        el("time", {}, clock(item.t)), el("span", { class: `kind kind-${item.kind}` }, M.kindName(item.kind)),
        el("span", { class: "detail" }, item.text))));
    },
  };

  const phases = { own: null, market: null, dirty: true };
  const phasePanel = {
    id: "phase",
    streams: {
      market_status: { history: 20, apply(row) {
        const t = ms(row.ts);
        const slot = row.ticker === "*" ? "market" : "own";
        const current = phases[slot];
        if (!current || !(t < current.t)) phases[slot] = { t, phase: row.phase };
        phases.dirty = true;
      } },
    },
    mount() {},
    render() {
      if (!phases.dirty) return;
      phases.dirty = false;
      const { own, market } = phases;
      const chosen = own && (!market || own.t >= market.t) ? own : market;
      phases.chosen = chosen ? chosen.phase : null;
      els.phase.className = `chip${chosen ? ` phase-${chosen.phase}` : ""}`;
      els.phase.textContent = `${tr("phase")}: ${M.phaseName(chosen ? chosen.phase : null)}`;
    },
  };

  // ---------- MOEX AlgoPack super candles (issue #14): 5-minute trade and book stats, alerts ----------
  const MAX_WINDOWS = 120;  // 5-minute windows: a 10-hour session
  const MAX_ALERTS = 8;
  const HORIZONS = [5, 15, 30, 60];
  const superCandles = { trades: [], books: [], alerts: new Map(), outcomes: new Map(), stats: new Map(), dirty: true };
  function statsText(type) {
    return HORIZONS.map((h) => superCandles.stats.get(`${type}:${h}`)).filter(Boolean).map((st) => tr("sc.stats", {
      horizon: st.horizon_min, rises: st.rises, rise_avg: num(st.rise_avg, 2, true), falls: st.falls, fall_avg: num(st.fall_avg, 2, true),
    })).join("\n");
  }
  const superPanel = {
    id: "super",
    streams: {
      tradestats_5m: { history: MAX_WINDOWS, apply(row) {
        const t = ms(row.window_end);
        if (!isFinite(t) || row.ticker !== TICKER) return;
        upsertByTime(superCandles.trades, { t, vol_b: row.vol_b, vol_s: row.vol_s, disb: row.disb }, MAX_WINDOWS);
        superCandles.dirty = true;
      } },
      obstats_5m: { history: MAX_WINDOWS, apply(row) {
        const t = ms(row.window_end);
        if (!isFinite(t) || row.ticker !== TICKER) return;
        upsertByTime(superCandles.books, { t, imbalance_vol_bbo: row.imbalance_vol_bbo, imbalance_vol: row.imbalance_vol,
          spread_bbo: row.spread_bbo, spread_1mio: row.spread_1mio }, MAX_WINDOWS);
        superCandles.dirty = true;
      } },
      alerts_1m: { history: 50, apply(row) {
        const t = ms(row.alert_time);
        if (!isFinite(t) || row.ticker !== TICKER) return;
        superCandles.alerts.set(row.event_id, { id: row.event_id, t, type: row.alert_type, value: row.value, threshold: row.threshold });
        superCandles.dirty = true;
      } },
      // An outcome may arrive before its alert (history is fetched per stream): kept by alert id.
      alerts_1m_outcomes: { history: 200, apply(row) {
        if (row.ticker !== TICKER) return;
        if (!superCandles.outcomes.has(row.alert_id)) superCandles.outcomes.set(row.alert_id, {});
        superCandles.outcomes.get(row.alert_id)[row.horizon_min] = row.change_pct;
        superCandles.dirty = true;
      } },
      // How this alert type has played out so far this session, per horizon: the type cell's tooltip.
      alerts_1m_stats: { history: 200, apply(row) {
        const t = ms(row.outcome_time);
        if (!isFinite(t) || row.ticker !== TICKER) return;
        const key = `${row.alert_type}:${row.horizon_min}`;
        const current = superCandles.stats.get(key);
        if (!current || t >= current.t) superCandles.stats.set(key, { ...row, t });
        superCandles.dirty = true;
      } },
    },
    mount(aside) {
      const figure = (key, id) => el("div", { "data-i18n-title": `${key}.title` }, el("dt", { "data-i18n": key }), el("dd", { id }, "—"));
      const head = ["sc.alert.time", "sc.alert.type", "sc.alert.value", ...HORIZONS.map((h) => `sc.alert.h${h}`)];
      aside.append(el("section", { class: "panel", id: "super" },
        el("h2", { "data-i18n-title": "sc.title" }, el("span", { "data-i18n": "sc" }), " ", el("small", { class: "muted", id: "sc-time" })),
        el("dl", { class: "figures" }, figure("sc.vol_b", "sc-vol-b"), figure("sc.vol_s", "sc-vol-s"), figure("sc.disb", "sc-disb"),
          figure("sc.imbalance_vol_bbo", "sc-imb-bbo"), figure("sc.imbalance_vol", "sc-imb"), figure("sc.spread_bbo", "sc-spread-bbo"),
          figure("sc.spread_1mio", "sc-spread-1mio")),
        el("div", { id: "super-chart", "data-i18n-aria": "sc.chart.title" }),
        el("table", { class: "mini", id: "sc-alerts" },
          el("thead", {}, el("tr", {}, ...head.map((key) => el("th", { "data-i18n": key, "data-i18n-title": `${key}.title` })))),
          el("tbody", {}))));
    },
    render() {
      if (!superCandles.dirty) return;
      superCandles.dirty = false;
      const set = (id, text) => { $(id).textContent = text; };
      const trade = superCandles.trades[superCandles.trades.length - 1];
      const book = superCandles.books[superCandles.books.length - 1];
      if (trade) {
        set("sc-time", `${shortClock(trade.t - 5 * MINUTE_MS)}–${shortClock(trade.t)}`);
        set("sc-vol-b", num(trade.vol_b, 0));
        set("sc-vol-s", num(trade.vol_s, 0));
        set("sc-disb", num(trade.disb, 2, true));
      }
      if (book) {
        set("sc-imb-bbo", num(book.imbalance_vol_bbo, 2, true));
        set("sc-imb", num(book.imbalance_vol, 2, true));
        set("sc-spread-bbo", `${num(book.spread_bbo, 1)} ${tr("unit.bps")}`);
        set("sc-spread-1mio", `${num(book.spread_1mio, 1)} ${tr("unit.bps")}`);
      }
      const tradeX = superCandles.trades.map((p) => mskAxis(p.t - 5 * MINUTE_MS));
      const bookX = superCandles.books.map((p) => mskAxis(p.t - 5 * MINUTE_MS));
      Plotly.react($("super-chart"), [
        { type: "bar", name: tr("sc.vol_b"), x: tradeX, y: superCandles.trades.map((p) => p.vol_b), marker: { color: "rgba(38,166,154,.7)" } },
        { type: "bar", name: tr("sc.vol_s"), x: tradeX, y: superCandles.trades.map((p) => -p.vol_s), marker: { color: "rgba(239,83,80,.7)" },
          customdata: superCandles.trades.map((p) => p.vol_s), hovertemplate: "%{customdata}" },
        { type: "scatter", mode: "lines", name: tr("sc.spread_bbo"), x: bookX, y: superCandles.books.map((p) => p.spread_bbo),
          yaxis: "y2", line: { color: "#f0b429", width: 1.2 } },
        { type: "scatter", mode: "lines", name: tr("sc.spread_1mio"), x: bookX, y: superCandles.books.map((p) => p.spread_1mio),
          yaxis: "y2", line: { color: "#4fc3f7", width: 1.2 } },
      ], {
        uirevision: TICKER, paper_bgcolor: "#151b23", plot_bgcolor: "#151b23", font: { color: "#d5dde5", size: 10 },
        margin: { l: 40, r: 28, t: 4, b: 22 }, showlegend: false, barmode: "relative", hovermode: "x",
        separators: M.lang === "ru" ? ",\u202f" : ".,",
        xaxis: { ...AXIS, type: "date", tickformat: "%H:%M", hoverformat: "%H:%M" },
        yaxis: { ...AXIS, title: { text: tr("chart.volume") } },
        yaxis2: { ...AXIS, overlaying: "y", side: "right", showgrid: false, tickformat: ".1f" },
      }, { displayModeBar: false, responsive: true });
      const latest = [...superCandles.alerts.values()].sort((a, b) => b.t - a.t || (a.type < b.type ? -1 : 1)).slice(0, MAX_ALERTS);
      $("sc-alerts").tBodies[0].replaceChildren(...latest.map((alert) => {
        const outcomes = superCandles.outcomes.get(alert.id) || {};
        return el("tr", { "data-alert": alert.id },
          el("td", {}, shortClock(alert.t)), el("td", { class: "wrap", title: statsText(alert.type) }, M.alertName(alert.type)),
          el("td", { class: "num" }, `${num(alert.value, 0)} / ${num(alert.threshold, 0)}`),
          ...HORIZONS.map((h) => el("td", { class: `num ${outcomes[h] > 0 ? "up" : outcomes[h] < 0 ? "down" : ""}` },
            outcomes[h] == null ? "…" : num(outcomes[h], 2, true))));
      }));
    },
  };

  // ---------- the strategies (issue #15): the ticker's position, last fill, equity; the portfolio ----------
  const STRATEGIES = ["ema_cross_12_26", "rsi_reversion_14", "bollinger_breakout_20"];
  const strategies = { rows: Object.fromEntries(STRATEGIES.map((s) => [s, { own: null, fill: null, portfolio: null }])), dirty: true };
  function applyStrategy(name, row) {
    const t = ms(row.window_end);
    if (!isFinite(t)) return;
    const slot = strategies.rows[name];
    // The gateway sends the ticker's rows and the portfolio's (ticker "*") to a per-ticker page.
    if (row.ticker === "*") {
      if (!slot.portfolio || t >= slot.portfolio.t) slot.portfolio = { ...row, t };
    } else if (row.ticker === TICKER) {
      if (!slot.own || t >= slot.own.t) slot.own = { ...row, t };
      if (row.fill_lots && (!slot.fill || t >= slot.fill.t)) slot.fill = { ...row, t };
    }
    strategies.dirty = true;
  }
  // Drawdown as a signed percent below the peak, rounded first so a tiny one reads 0.00, not -0.00.
  const drawdownText = (fraction) => `${num(-Math.round(10000 * fraction) / 100 || 0, 2, true)} %`;
  const strategyPanel = {
    id: "strategies",
    streams: Object.fromEntries(STRATEGIES.map((name) => [name, { history: 200, apply: (row) => applyStrategy(name, row) }])),
    mount(aside) {
      const head = ["st.strategy", "st.position", "st.fill", "st.equity", "st.drawdown", "st.portfolio"];
      aside.append(el("section", { class: "panel", id: "strategies" },
        el("h2", { "data-i18n": "st", "data-i18n-title": "st.title" }),
        el("table", { class: "mini", id: "st-table" },
          el("thead", {}, el("tr", {}, ...head.map((key) => el("th", { "data-i18n": key, "data-i18n-title": `${key}.title` })))),
          el("tbody", {}, ...STRATEGIES.map((name) => el("tr", { "data-strategy": name },
            el("td", { class: "wrap", "data-i18n": `st.${name}`, "data-i18n-title": `st.${name}.title` }),
            ...["position", "fill", "equity", "drawdown", "portfolio"].map((cell) => el("td", { class: `num ${cell}${cell === "fill" || cell === "portfolio" ? " wrap" : ""}` }, "—"))))))));
    },
    render() {
      if (!strategies.dirty) return;
      strategies.dirty = false;
      for (const name of STRATEGIES) {
        const { own, fill, portfolio } = strategies.rows[name];
        const cell = (key) => document.querySelector(`#st-table tr[data-strategy="${name}"] td.${key}`);
        if (own) {
          cell("position").textContent = num(own.position, 0);
          cell("equity").textContent = num(own.equity, 0);
          cell("drawdown").textContent = drawdownText(own.drawdown);
        }
        // A fill happens at its candle's open: window_end − 1 minute.
        if (fill) {
          cell("fill").textContent = `${tr(fill.fill_lots > 0 ? "st.buy" : "st.sell")} ${num(Math.abs(fill.fill_lots), 0)} × ${price(fill.fill_price)} ${shortClock(fill.t - MINUTE_MS)}`;
        }
        if (portfolio) {
          cell("portfolio").textContent = `${num(portfolio.equity, 0)} (${drawdownText(portfolio.drawdown)})`;
        }
      }
    },
  };

  // Drawn in this order; the side panels appear in the aside in this order.
  const PANELS = [chartPanel, phasePanel, liquidityPanel, superPanel, strategyPanel, feedPanel];
  const STREAMS = Object.assign({}, ...PANELS.map((panel) => panel.streams));

  // ---------- the chart's traces ----------
  const AXIS = { gridcolor: "#222a33", zerolinecolor: "#2c3641", linecolor: "#2c3641" };

  function layout() {
    const shapes = [30, 70].map((level) => ({
      type: "line", xref: "paper", x0: 0, x1: 1, yref: "y3", y0: level, y1: level,
      line: { color: level === 70 ? "#ef5350" : "#26a69a", width: 1, dash: "dot" },
    }));
    const xaxis = { ...AXIS, type: "date", anchor: "y4", rangeslider: { visible: false }, tickformat: "%H:%M",
      hoverformat: "%d.%m %H:%M", title: { text: tr("chart.time"), font: { size: 10 } } };
    if (isFinite(FOCUS)) {
      // Opened from an alert: that candle framed and shaded, until the user zooms elsewhere.
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: mskAxis(FOCUS), x1: mskAxis(FOCUS + MINUTE_MS), y0: 0, y1: 1,
        fillcolor: "rgba(240,180,41,.18)", line: { width: 0 }, layer: "below" });
      xaxis.range = [mskAxis(FOCUS - 40 * MINUTE_MS), mskAxis(FOCUS + 10 * MINUTE_MS)];
    }
    return {
      uirevision: TICKER,   // keeps the user's zoom across updates
      paper_bgcolor: "#0f1419", plot_bgcolor: "#0f1419",
      font: { color: "#d5dde5", size: 11 },
      separators: M.lang === "ru" ? ",\u202f" : ".,",
      margin: { l: 56, r: 16, t: 10, b: 34 },
      showlegend: true,
      legend: { orientation: "h", traceorder: "normal", x: 0, y: 1.0, yanchor: "bottom", font: { size: 10 } },
      hovermode: "x",
      xaxis,
      yaxis: { ...AXIS, domain: [0.47, 1], title: { text: tr("chart.price") } },
      yaxis2: { ...AXIS, domain: [0.35, 0.45], title: { text: tr("chart.volume") } },
      yaxis3: { ...AXIS, domain: [0.18, 0.33], range: [0, 100], title: { text: tr("chart.rsi") } },
      yaxis4: { ...AXIS, domain: [0, 0.16], title: { text: tr("chart.macd") } },
      shapes,
    };
  }

  // Markers sit just outside their candle (below it for golden crosses and falls, above for
  // death crosses and jumps) so they do not hide the body; without the candle, at the price.
  const MARKER_SIDE = { golden_cross: -1, spike_down: -1, death_cross: 1, spike_up: 1 };

  function markerTrace(kind, symbol, color, candlesByTime) {
    const points = chart.markers.filter((m) => m.kind === kind);
    const side = MARKER_SIDE[kind];
    const y = points.map((m) => {
      const candle = candlesByTime.get(m.t);
      if (!candle) return m.y;
      const edge = side > 0 ? candle.high : candle.low;
      return edge * (1 + side * 0.0015);
    });
    return { type: "scatter", mode: "markers", name: M.kindName(kind), x: points.map((m) => mskAxis(m.t)), y,
      marker: { symbol, size: 11, color, line: { color: "#0f1419", width: 1 } }, yaxis: "y" };
  }

  function line(key, field, color, yaxis, extra = {}) {
    const rows = chart.indicators;
    return { type: "scatter", mode: "lines", name: tr(key), x: rows.map((r) => mskAxis(r.t)), y: rows.map((r) => r[field]),
      line: { color, width: 1.3 }, yaxis, connectgaps: false, ...extra };
  }

  function chartTraces() {
    const c = chart.candles;
    const x = c.map((k) => mskAxis(k.t));
    const ind = chart.indicators;
    const byTime = new Map(c.map((k) => [k.t, k]));
    const band = "rgba(144,164,174,.8)";
    return [
      { type: "candlestick", name: TICKER, x, open: c.map((k) => k.open), high: c.map((k) => k.high),
        low: c.map((k) => k.low), close: c.map((k) => k.close), yaxis: "y",
        increasing: { line: { color: "#26a69a" } }, decreasing: { line: { color: "#ef5350" } } },
      line("chart.sma", "sma_20", "#f0b429", "y"),
      line("chart.ema12", "ema_12", "#4fc3f7", "y"),
      line("chart.ema26", "ema_26", "#ba68c8", "y"),
      line("chart.bb_upper", "bb_upper", band, "y", { line: { color: band, width: 1, dash: "dot" } }),
      line("chart.bb_lower", "bb_lower", band, "y", { line: { color: band, width: 1, dash: "dot" },
        fill: "tonexty", fillcolor: "rgba(144,164,174,.07)" }),
      markerTrace("golden_cross", "triangle-up", "#26a69a", byTime),
      markerTrace("death_cross", "triangle-down", "#ef5350", byTime),
      markerTrace("spike_up", "star", "#f0b429", byTime),
      markerTrace("spike_down", "star", "#ff7043", byTime),
      { type: "bar", name: tr("chart.volume"), x, y: c.map((k) => k.volume), yaxis: "y2", showlegend: false,
        marker: { color: c.map((k) => (k.close >= k.open ? "rgba(38,166,154,.6)" : "rgba(239,83,80,.6)")) } },
      line("chart.rsi", "rsi_14", "#f0b429", "y3", { showlegend: false }),
      line("chart.macd", "macd", "#4fc3f7", "y4", { showlegend: false }),
      line("chart.macd_signal", "macd_signal", "#ff7043", "y4", { showlegend: false }),
      { type: "bar", name: tr("chart.macd_hist"), x: ind.map((r) => mskAxis(r.t)), y: ind.map((r) => r.macd_hist), yaxis: "y4",
        showlegend: false, marker: { color: ind.map((r) => ((r.macd_hist ?? 0) >= 0 ? "rgba(38,166,154,.7)" : "rgba(239,83,80,.7)")) } },
    ];
  }

  const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  // ---------- drawing ----------
  function scheduleRender() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(render);
  }

  function render() {
    frameRequested = false;
    const started = performance.now();
    for (const panel of PANELS) panel.render();
    els.lastUpdate.textContent = lastRowAt == null ? tr("data.none") : tr("data.last", { time: clock(lastRowAt) });
    counters.renders += 1;
    counters.lastRenderMs = performance.now() - started;
    publishState();
  }

  function publishState() {
    window.dashboardState = {
      page: "ticker", lang: M.lang, ticker: TICKER, connection: live ? live.connection : "reconnecting",
      lastEventId: live ? live.lastEventId : "", events: live ? live.events : 0,
      eventsByStream: live ? { ...live.eventsByStream } : {}, gaps: live ? live.gaps : 0,
      candles: chart.candles.length, indicators: chart.indicators.length, markers: chart.markers.length,
      feed: feed.items.length, spreadPoints: liquidity.spread.length, liquidity: liquidity.last ? 1 : 0,
      superWindows: superCandles.trades.length, bookWindows: superCandles.books.length, alerts: superCandles.alerts.size,
      outcomes: [...superCandles.outcomes.values()].reduce((n, o) => n + Object.keys(o).length, 0),
      strategies: Object.fromEntries(STRATEGIES.map((s) => [s, strategies.rows[s].own ? strategies.rows[s].own.window_end : null])),
      phase: phases.chosen || null, phaseText: els.phase.textContent, focus: isFinite(FOCUS) ? new Date(FOCUS).toISOString() : null,
      job: { ...M.job }, ...counters,
    };
  }

  function onRow(stream, row) {
    const handler = STREAMS[stream];
    if (!handler) return;
    handler.apply(row);
    scheduleRender();
  }

  async function loadTickers() {
    const { tickers } = await M.getJson("api/tickers");
    const names = tickers.includes(TICKER) ? tickers : [TICKER, ...tickers];
    if (names.join() !== [...els.ticker.options].map((o) => o.value).join()) {
      els.ticker.replaceChildren(...names.map((name) => new Option(name, name)));
    }
    els.ticker.value = TICKER;
  }

  els.ticker.addEventListener("change", () => {
    location.assign(new URL(`ticker/${encodeURIComponent(els.ticker.value)}`, document.baseURI));
  });

  async function boot() {
    for (const panel of PANELS) panel.mount(els.aside);
    M.translatePage();
    document.title = tr("title.ticker", { ticker: TICKER });
    M.showConnection(els.connection, "reconnecting");
    publishState();
    M.watchHealth();
    scheduleRender();
    const connect = async () => {
      try {
        const streams = await M.servedStreams(Object.keys(STREAMS));
        await loadTickers();
        setInterval(() => loadTickers().catch(() => {}), 30000);
        live = new M.LiveStream({
          history: Object.fromEntries(streams.map((name) => [name, STREAMS[name].history])), ticker: TICKER,
          heartbeatS: HEARTBEAT_S, onRow,
          onGap: (gap) => {
            addFeed({ t: Date.now(), kind: "gap", text: tr("gap.text", { stream: gap.stream, from: gap.from, to: gap.to - 1 }) });
            scheduleRender();
          },
          onState: (state) => { M.showConnection(els.connection, state); publishState(); },
        });
        await live.start();
      } catch (err) {
        console.warn("gateway not answering:", err.message);
        M.showConnection(els.connection, "reconnecting");
        setTimeout(connect, 3000);
      }
    };
    await connect();
  }

  boot();
})();
