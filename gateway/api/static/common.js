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

  const TYPE_LABELS = {
    emergency_call: "紧急呼叫 Emergency call",
    fall: "跌倒 Fall",
    not_up: "未起床 Not up",
    night_bed_exit: "夜间离床 Night bed exit",
    no_activity: "无活动 No activity",
    motionless_in_bed: "床上静止 Motionless in bed",
    vitals_abnormal: "体征异常 Abnormal vitals",
    apnea: "呼吸暂停 Apnea",
    not_worn: "未佩戴 Not worn",
    device_offline: "设备离线 Device offline",
    hub_offline: "网关离线 Hub offline",
    site_offline: "站点离线 Site offline",
    low_battery: "电量低 Low battery",
    device_clock_wrong: "设备时钟错误 Device clock wrong",
    smoke_alarm: "烟雾报警 Smoke alarm",
    gas_alarm: "燃气泄漏报警 Gas alarm",
    water_leak: "漏水 Water leak",
    door_open_at_night: "夜间开门 Door open at night",
    device_tampered: "设备被拆动 Device tampered",
  };
  const STATE_LABELS = {
    raised: "待响应 Raised",
    acknowledged: "已接单 Acknowledged",
    dispatched: "已派人 Dispatched",
    on_scene: "已到场 On scene",
    resolved: "已处理 Resolved",
    closed: "已关闭 Closed",
    cancelled: "已取消 Cancelled",
  };
  const OUTCOME_LABELS = {
    false_alarm: "误报 False alarm",
    assisted: "已协助 Assisted",
    hospital_transfer: "送医 Hospital transfer",
    no_action_needed: "无需处理 No action needed",
    technical_fixed: "技术问题已修复 Technical fixed",
    condition_cleared: "已自动恢复 Condition cleared",
    other: "其他 Other",
  };

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
    if (s < 60) return `${s} 秒 s`;
    if (s < 3600) return `${Math.floor(s / 60)} 分 ${s % 60} 秒`;
    const h = Math.floor(s / 3600);
    return `${h} 小时 ${Math.floor((s % 3600) / 60)} 分`;
  }
  function clock(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString("zh-CN", { hour12: false });
  }
  const typeLabel = (t) => TYPE_LABELS[t] || t;
  const stateLabel = (s) => STATE_LABELS[s] || s;
  const outcomeLabel = (o) => OUTCOME_LABELS[o] || o;

  return {
    ApiError, api, signIn, signOut, token, validToken, refresh, role, now, el, duration, clock,
    typeLabel, stateLabel, outcomeLabel, OUTCOME_LABELS,
  };
})();
