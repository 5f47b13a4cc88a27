// Shared by the overview (/) and the ticker page (/ticker/X): the language and its number and
// time formats (always Moscow time), the gateway API, the columns the pages read, ONE live
// EventSource resumed exactly after the history, the connection chip and the job health banner.
// Plain script, no build step; exposes window.MOEX.
(() => {
  "use strict";

  // ---------- language ----------
  const LANGS = ["en", "ru"];
  const LANG_COOKIE = "lang";
  const LANG_STORE = "moex.lang";
  const MSK_MS = 3 * 3600 * 1000;  // Moscow: UTC+3, no daylight saving since 2014
  const MINUTE_MS = 60 * 1000;

  function storedLang() {
    const fromCookie = (document.cookie.match(/(?:^|;\s*)lang=([a-z]+)/) || [])[1];
    if (LANGS.includes(fromCookie)) return fromCookie;
    try {
      const fromStore = localStorage.getItem(LANG_STORE);
      if (LANGS.includes(fromStore)) return fromStore;
    } catch (err) { /* storage disabled: the cookie or Accept-Language decides */ }
    return null;
  }

  // The gateway picked <html lang> from the cookie or Accept-Language; a choice stored in this
  // browser wins (a cookie may have been cleared while localStorage kept it).
  const lang = storedLang() || (LANGS.includes(document.documentElement.lang) ? document.documentElement.lang : "en");
  document.documentElement.lang = lang;
  const DICT = window.MOEX_I18N[lang];
  const EN = window.MOEX_I18N.en;
  const LOCALE = lang === "ru" ? "ru-RU" : "en-GB";

  function t(key, vars = {}) {
    const text = DICT[key] ?? EN[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] == null ? "" : String(vars[name])));
  }

  function setLang(next) {
    document.cookie = `${LANG_COOKIE}=${next}; path=/; max-age=31536000; SameSite=Lax`;
    try { localStorage.setItem(LANG_STORE, next); } catch (err) { /* the cookie is enough */ }
    location.reload();
  }

  // Static texts: data-i18n (text), data-i18n-title (tooltip), data-i18n-aria (aria-label).
  function translatePage(root = document) {
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
    for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
    for (const button of root.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
      button.onclick = () => { if (button.dataset.lang !== lang) setLang(button.dataset.lang); };
    }
  }

  // ---------- numbers and times ----------
  const formats = new Map();
  function numberFormat(digits, signed) {
    const key = `${digits}${signed ? "+" : ""}`;
    if (!formats.has(key)) {
      formats.set(key, new Intl.NumberFormat(LOCALE, { minimumFractionDigits: digits, maximumFractionDigits: digits,
        signDisplay: signed ? "exceptZero" : "auto" }));
    }
    return formats.get(key);
  }
  // Russian typography: thousands apart by a thin space (U+202F, which does not break a line),
  // decimal comma; Intl gives a no-break space (U+00A0).
  const num = (v, digits = 2, signed = false) => {
    if (v == null || v === "" || !isFinite(v)) return "—";
    const text = numberFormat(digits, signed).format(Number(v));
    return lang === "ru" ? text.replace(/\u00a0/g, "\u202f") : text;
  };
  const priceDigits = (v) => (Math.abs(v) >= 1000 ? 1 : 2);
  const price = (v) => (v == null || !isFinite(v) ? "—" : num(v, priceDigits(Number(v))));

  const clockFormat = new Intl.DateTimeFormat(LOCALE, { timeZone: "Europe/Moscow", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  const shortClockFormat = new Intl.DateTimeFormat(LOCALE, { timeZone: "Europe/Moscow", hour: "2-digit",
    minute: "2-digit", hourCycle: "h23" });
  const clock = (t) => (isFinite(t) ? clockFormat.format(t) : "—");
  const shortClock = (t) => (isFinite(t) ? shortClockFormat.format(t) : "—");
  const ms = (iso) => (iso == null ? NaN : Date.parse(iso));
  // Plotly draws date strings as they are: hand it Moscow wall-clock time.
  const mskAxis = (t) => new Date(t + MSK_MS).toISOString().slice(0, 19).replace("T", " ");
  // The 1-minute candle an instant belongs to; an instant equal to a window end is that window's.
  const candleStart = (t) => Math.floor((t - 1) / MINUTE_MS) * MINUTE_MS;
  const mskDay = (t) => Math.floor((t + MSK_MS) / (24 * 3600 * 1000));
  const phaseName = (phase) => (phase == null ? t("phase.none") : t(`phase.${phase}`) !== `phase.${phase}`
    ? t(`phase.${phase}`) : String(phase).replace(/_/g, " "));
  // An AlgoPack alert type is a metric and a rule (net_vol_99_9_pctl+, vol_b_max): each translated.
  const alertName = (type) => {
    const match = /^(.*?)_(99_9_pctl[+-]?|max|min)$/.exec(String(type));
    if (!match) return String(type).replace(/_/g, " ");
    return t("alert.rule", { metric: t(`alert.metric.${match[1]}`), rule: t(`alert.rule.${match[2]}`) });
  };
  const kindName = (kind) => (t(`kind.${kind}`) !== `kind.${kind}` ? t(`kind.${kind}`) : String(kind).replace(/_/g, " "));

  // ---------- the gateway ----------
  const token = new URLSearchParams(location.search).get("token");

  function apiUrl(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [key, value] of Object.entries(params)) if (value != null && value !== "") url.searchParams.set(key, value);
    if (token) url.searchParams.set("token", token);
    return url;
  }

  async function getJson(path, params) {
    const response = await fetch(apiUrl(path, params), { headers: { Accept: "application/json" } });
    if (!response.ok && response.status !== 503) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  // ---------- the columns the pages read ----------
  let columns = {};

  // Only the columns web/static/columns.json declares reach the pages: that file is their schema,
  // checked against the job's catalog by tests/test_web_columns.py.
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

  // The streams among `wanted` that the gateway serves, after loading the page's columns.
  async function servedStreams(wanted) {
    columns = (await getJson("static/columns.json")).streams;
    const { streams } = await getJson("api/streams");
    const missing = missingColumns(streams.filter((s) => wanted.includes(s.name)));
    if (missing.length) {
      console.warn(`the job's catalog lacks columns this page reads: ${missing.join(", ")}`);
      showBanner("columns", t("columns.missing", { columns: missing.join(", ") }));
    }
    const served = new Set(streams.map((s) => s.name));
    return wanted.filter((name) => served.has(name));
  }

  // ---------- one live stream: history first, then ONE EventSource resuming after it ----------
  class LiveStream {
    // history: {stream: limit}; onRow(stream, row, live); onGap(gap); onState(connection)
    constructor({ history, ticker, heartbeatS, onRow, onGap, onState }) {
      Object.assign(this, { history, ticker, heartbeatS, onRow, onGap, onState });
      this.streams = Object.keys(history);
      this.source = null;
      this.retryTimer = null;
      this.retryDelay = 1000;
      this.lastEventAt = 0;
      this.lastEventId = "";
      this.connection = "reconnecting";
      this.events = 0;
      this.eventsByStream = {};
      this.gaps = 0;
      setInterval(() => {
        // "stale": connected, yet not even a heartbeat for two intervals.
        if (this.connection === "live" && Date.now() - this.lastEventAt > 2 * this.heartbeatS * 1000) this.setState("stale");
      }, 1000);
    }

    async start() {
      const answers = await Promise.all(this.streams.map((name) =>
        getJson(`api/streams/${name}`, { ticker: this.ticker, limit: this.history[name] }).catch((err) => {
          console.warn(`history of ${name}:`, err.message);
          return null;
        })));
      const cursors = [];
      answers.forEach((answer, i) => {
        if (!answer) return;
        for (const row of answer.rows) this.deliver(this.streams[i], row, false);
        if (answer.cursor) cursors.push(answer.cursor);
      });
      // Resume exactly after the history: no row between the two requests is lost or repeated.
      this.lastEventId = cursors.join(",");
      this.connect();
    }

    deliver(stream, row, live) {
      if (row == null || typeof row !== "object") return;
      this.onRow(stream, pick(stream, row), live);
    }

    setState(next) {
      if (this.connection === next) return;
      this.connection = next;
      this.onState(next);
    }

    connect() {
      clearTimeout(this.retryTimer);
      if (this.source) this.source.close();
      const es = new EventSource(apiUrl("api/events", { streams: this.streams.join(","), ticker: this.ticker,
        last_event_id: this.lastEventId }));
      this.source = es;
      const seen = (event) => {
        if (this.source !== es) return false;
        this.lastEventAt = Date.now();
        if (event.lastEventId) this.lastEventId = event.lastEventId;
        if (es.readyState === EventSource.OPEN) this.setState("live");
        return true;
      };
      es.onopen = () => { this.retryDelay = 1000; seen({}); };
      es.onerror = () => {
        if (this.source !== es) return;
        this.setState("reconnecting");
        if (es.readyState === EventSource.CLOSED) {
          // The browser gave up (HTTP error such as 503 when the gateway is full): retry ourselves.
          this.retryTimer = setTimeout(() => this.connect(), this.retryDelay);
          this.retryDelay = Math.min(this.retryDelay * 2, 30000);
        }
      };
      for (const name of ["ready", "heartbeat", "closed"]) es.addEventListener(name, seen);
      es.addEventListener("gap", (event) => {
        if (!seen(event)) return;
        this.gaps += 1;
        this.onGap(JSON.parse(event.data));
      });
      for (const name of this.streams) {
        es.addEventListener(name, (event) => {
          if (!seen(event)) return;
          this.events += 1;
          this.eventsByStream[name] = (this.eventsByStream[name] || 0) + 1;
          this.deliver(name, JSON.parse(event.data), true);
        });
      }
    }
  }

  function showConnection(el, state) {
    el.textContent = t(`conn.${state}`);
    el.className = `conn conn-${state}`;
  }

  // ---------- banners: the job's health (polled from /healthz), missing columns ----------
  const banners = new Map();

  function showBanner(id, text) {
    if (text) banners.set(id, text); else banners.delete(id);
    const el = document.getElementById("banner");
    if (!el) return;
    el.hidden = banners.size === 0;
    el.replaceChildren(...[...banners.values()].map((line) => {
      const p = document.createElement("p");
      p.textContent = line;
      return p;
    }));
  }

  const job = { state: null, restarts: null, restartsAtLoad: null, banner: false };

  // `job` in /healthz: {"state": "RUNNING"|"RESTARTING"|"FAILED"|..., "restarts": N,
  // "last_exception": "..."|null}. A gateway without it (older, or no job to watch) shows nothing.
  function checkJob(health) {
    const info = health && health.job;
    if (!info || typeof info !== "object") {
      Object.assign(job, { state: null, banner: false });
      showBanner("job", null);
      return;
    }
    const restarts = Number(info.restarts) || 0;
    if (job.restartsAtLoad == null) job.restartsAtLoad = restarts;
    job.state = String(info.state ?? "UNKNOWN");
    job.restarts = restarts;
    const state = t(`job.state.${job.state}`) !== `job.state.${job.state}` ? t(`job.state.${job.state}`) : job.state;
    const exception = info.last_exception ? t("job.exception", { text: String(info.last_exception).slice(0, 300) }) : "";
    let text = null;
    if (job.state !== "RUNNING") text = t("job.banner", { state, restarts, exception });
    else if (restarts > job.restartsAtLoad) text = t("job.restarted", { count: restarts - job.restartsAtLoad, state, exception });
    job.banner = text != null;
    showBanner("job", text);
  }

  function watchHealth(everyMs = 5000) {
    const poll = async () => {
      try {
        const response = await fetch(apiUrl("healthz"), { headers: { Accept: "application/json" } });
        checkJob(await response.json());
      } catch (err) { /* the gateway is away: the connection chip says so */ }
      setTimeout(poll, everyMs);
    };
    poll();
  }

  if (lang === "ru" && window.Plotly) {
    Plotly.register(window.MOEX_PLOTLY_RU);
    Plotly.setPlotConfig({ locale: "ru" });
  }

  window.MOEX = {
    lang, t, translatePage, num, price, clock, shortClock, ms, mskAxis, candleStart, mskDay, MINUTE_MS,
    phaseName, kindName, alertName, apiUrl, getJson, servedStreams, LiveStream, showConnection, showBanner,
    watchHealth, checkJob, job,
  };
})();
