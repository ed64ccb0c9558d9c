/* Shared by the staff console and the family view: sign-in, the token, API calls, labels.
 * The tokens live in sessionStorage only (gone when the tab closes); nothing is logged.
 * Access tokens are short-lived: validToken() renews one shortly before it expires with the
 * session's refresh token (POST /auth/refresh, which rotates it), and api() renews once on a
 * 401, so the pages keep working until the session ends or is revoked. */
"use strict";

const SHG = (() => {
  const TOKEN_KEY = "shg.token";
  const ROLE_KEY = "shg.role";
  const REFRESH_KEY = "shg.refresh";
  const EXPIRES_KEY = "shg.expires"; // access token expiry, this browser's clock (ms)
  const RENEW_BEFORE_MS = 60 * 1000;
  let renewing = null; // the refresh in flight (one at a time: a refresh token works once)
  let clockOffsetMs = 0; // server clock minus this browser's clock (from the Date header)

  const LANG_KEY = "shg.lang"; // the user's language choice, this browser (zh-CN default)
  const OUTCOMES = ["false_alarm", "assisted", "hospital_transfer", "no_action_needed",
    "technical_fixed", "condition_cleared", "other"];
  let siteOffsetS = 8 * 3600; // the site's UTC offset: every time is shown in the site's zone
  let siteDemo = false; // the site runs on the demo's clock: labelled 演示时钟, not "UTC-1:54"

  function lang() {
    const l = localStorage.getItem(LANG_KEY);
    return SHG_I18N.languages.includes(l) ? l : "zh-CN";
  }
  /* A message of the catalogue with its {placeholders} filled (the key if unknown). */
  function t(key, params = {}) {
    const msgs = SHG_I18N.messages[lang()];
    const msg = key in msgs ? msgs[key] : SHG_I18N.messages["zh-CN"][key];
    if (msg === undefined) return key;
    return String(msg).replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }
  /* Fill every element marked data-i18n (text) or data-i18n-label (aria-label). */
  function translatePage() {
    document.documentElement.lang = lang();
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
  }
  function setLang(l) {
    localStorage.setItem(LANG_KEY, SHG_I18N.languages.includes(l) ? l : "zh-CN");
    translatePage();
    document.dispatchEvent(new CustomEvent("shg:lang"));
  }
  function toggleLang() { setLang(lang() === "zh-CN" ? "en" : "zh-CN"); }

  function setSiteOffset(s, demo = false) {
    if (Number.isFinite(Number(s))) { siteOffsetS = Number(s); siteDemo = Boolean(demo); }
  }
  /* The zone's label: "UTC+8", or 演示时钟 for a site on the demo's clock (demo_clock). */
  function tzName(offsetS = siteOffsetS, demo = offsetS === siteOffsetS && siteDemo) {
    if (demo) return t("tz.demo");
    const sign = offsetS < 0 ? "-" : "+";
    const a = Math.abs(offsetS);
    const h = Math.floor(a / 3600);
    const m = Math.floor((a % 3600) / 60);
    return `UTC${sign}${h}${m ? `:${String(m).padStart(2, "0")}` : ""}`;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function siteDate(ms, offsetS = siteOffsetS) { return new Date(ms + offsetS * 1000); } // read with getUTC*()
  /* HH:MM in the site's zone of an ISO time or epoch milliseconds. */
  function hm(value) {
    if (value === null || value === undefined || value === "") return "—";
    const ms = typeof value === "number" ? value : Date.parse(value);
    if (Number.isNaN(ms)) return "—";
    const d = siteDate(ms);
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  }
  function isToday(value, offsetS = siteOffsetS) {
    const ms = typeof value === "number" ? value : Date.parse(value);
    return siteDate(ms, offsetS).toISOString().slice(0, 10) === siteDate(now(), offsetS).toISOString().slice(0, 10);
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(`${status}: ${detail}`);
      this.status = status;
      this.detail = detail;
    }
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function role() { return sessionStorage.getItem(ROLE_KEY); }
  function forget() {
    for (const key of [TOKEN_KEY, ROLE_KEY, REFRESH_KEY, EXPIRES_KEY]) sessionStorage.removeItem(key);
  }
  /* Sign out: the gateway ends the session (its tokens stop working), then forget them. */
  function signOut() {
    const tok = token();
    forget();
    if (tok) {
      fetch("/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${tok}` } })
        .catch(() => {});
    }
  }
  function keep(body) {
    sessionStorage.setItem(TOKEN_KEY, body.access_token);
    sessionStorage.setItem(ROLE_KEY, body.role);
    sessionStorage.setItem(REFRESH_KEY, body.refresh_token);
    sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + body.expires_in * 1000));
  }

  /* A new access token for this session; false when the session is over (then signed out). */
  function refresh() {
    if (renewing) return renewing;
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (!refreshToken) return Promise.resolve(false);
    renewing = (async () => {
      try {
        const resp = await fetch("/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: refreshToken }),
        });
        if (resp.status === 401) { forget(); return false; }
        if (!resp.ok) return false;
        keep(await resp.json());
        return true;
      } catch {
        return false; // network: the next call tries again
      } finally {
        renewing = null;
      }
    })();
    return renewing;
  }

  /* The access token, renewed first when it expires within a minute. */
  async function validToken() {
    const expires = Number(sessionStorage.getItem(EXPIRES_KEY) || 0);
    if (token() && Date.now() > expires - RENEW_BEFORE_MS) await refresh();
    const tok = token();
    if (!tok) throw new ApiError(401, "session ended");
    return tok;
  }

  function noteServerClock(resp) {
    const date = resp.headers.get("Date");
    if (date) {
      const server = Date.parse(date);
      // The header has whole seconds: +500 ms centres it; small skews are noise, not skew.
      const offset = Number.isNaN(server) ? 0 : server + 500 - Date.now();
      clockOffsetMs = Math.abs(offset) < 1500 ? 0 : offset;
    }
  }
  function now() { return Date.now() + clockOffsetMs; }

  function detailOf(body, fallback) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => `${(d.loc || []).slice(-1)[0] || ""} ${d.msg}`).join("; ");
    }
    return fallback;
  }

  async function signIn(username, password) {
    const resp = await fetch("/auth/token", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ username, password }),
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, detailOf(body, resp.statusText));
    noteServerClock(resp);
    keep(body);
    return body;
  }

  /* fetch() with the bearer token; JSON in and out; ApiError on any non-2xx answer.
   * A 401 renews the token once and sends again (the gateway did nothing on a 401). */
  async function api(path, { method = "GET", body } = {}) {
    const send = async () => {
      const headers = { Authorization: `Bearer ${await validToken()}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      return fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    };
    let resp = await send();
    if (resp.status === 401 && await refresh()) resp = await send();
    noteServerClock(resp);
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, detailOf(data, resp.statusText));
    return data;
  }

  /* A DOM element with text (never innerHTML: data is never parsed as markup). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return t("dur.s", { s });
    if (s < 3600) return t("dur.m", { m: Math.floor(s / 60), s: s % 60 });
    return t("dur.h", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  }
  /* A time in the site's zone: "14:02:05" today, "12-03 14:02" otherwise, with the zone
   * once (withZone) — e.g. "14:02:05 (UTC+8)". offsetS: another site's zone (a worker's
   * elders may live in several sites), demo: that site runs on the demo's clock. */
  function clock(iso, withZone = true, offsetS = siteOffsetS, demo = offsetS === siteOffsetS && siteDemo) {
    if (!iso) return "—";
    const ms = typeof iso === "number" ? iso : Date.parse(iso);
    if (Number.isNaN(ms)) return "—";
    const d = siteDate(ms, offsetS);
    const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    const text = isToday(ms, offsetS) ? time : `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${time}`;
    return withZone ? `${text} (${tzName(offsetS, demo)})` : text;
  }
  const typeLabel = (x) => t(`type.${x}`);
  const stateLabel = (x) => t(`state.${x}`);
  const outcomeLabel = (x) => t(`outcome.${x}`);
  const roleLabel = (x) => t(`role.${x}`);
  const kindLabel = (x) => (x ? t(`kind.${x}`) : "");
  /* The plain sentence for an incident's reason (null: none for this type). */
  function reasonText(inc) {
    const fn = (SHG_I18N.reasons[lang()] || {})[inc.type];
    if (!fn) return null;
    const helpers = {
      clock: (epochS) => (epochS ? clock(Number(epochS) * 1000) : "—"),
      dur: duration,
      kind: kindLabel,
    };
    try { return fn(inc.details || {}, helpers); } catch { return null; }
  }
  document.addEventListener("DOMContentLoaded", translatePage);

  /* Run ``render`` (which re-builds or re-inserts what ``root`` holds) without taking the
   * keyboard away from the user: moving a focused field out of the page blurs it, and what
   * she types next would go nowhere (live events and the reconcile re-render every few
   * seconds). The field with the same id gets the focus and the caret back. */
  function keepFocus(root, render) {
    const active = document.activeElement;
    const inside = active && active.id && root.contains(active) ? active : null;
    const caret = inside && typeof inside.selectionStart === "number"
      ? [inside.selectionStart, inside.selectionEnd] : null;
    render();
    if (!inside || document.activeElement === inside && inside.isConnected) return;
    const again = document.getElementById(inside.id);
    if (!again || !root.contains(again)) return;
    again.focus({ preventScroll: true });
    if (caret && typeof again.setSelectionRange === "function") {
      try { again.setSelectionRange(caret[0], caret[1]); } catch { /* not a text field */ }
    }
  }

  return {
    ApiError, api, signIn, signOut, token, validToken, refresh, role, now, el, duration, clock,
    hm, isToday, typeLabel, stateLabel, outcomeLabel, roleLabel, kindLabel, reasonText, OUTCOMES,
    t, lang, setLang, toggleLang, translatePage, setSiteOffset, tzName, keepFocus,
  };
})();
