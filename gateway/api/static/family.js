/* The family view: is my relative safe, is someone handling it, what happened lately.
 * Family members have no live stream: the page re-reads every 15 s while it is visible. */
"use strict";

(() => {
  const { api, el } = SHG;
  const POLL_MS = 15000;
  const $ = (id) => document.getElementById(id);
  const ui = { login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    list: $("relatives"), error: $("error"), updated: $("updated"), signOut: $("sign-out") };
  let timer = null;

  function showError(text) { ui.error.textContent = text; ui.error.hidden = false; }
  function clearError() { ui.error.hidden = true; ui.error.textContent = ""; }

  function handler(inc) {
    if (inc.responder) return `${inc.handled_by || "工作人员 staff"} 已派 ${inc.responder} 前往 · responder sent`;
    if (inc.handled_by) return `${inc.handled_by} 正在处理 · is handling it`;
    return "正在通知工作人员 · staff are being alerted";
  }

  function relativeCard(r) {
    const card = el("article", { class: "card", "data-resident-id": r.resident_id },
      el("h2", { text: r.display_name || r.resident_id }));
    if (r.safe === true) {
      card.append(el("p", { class: "verdict safe", id: `verdict-${r.resident_id}` }, "✔ 平安 · Safe — 没有未处理的事件 no open incident"));
    } else if (r.safe === false) {
      const inc = r.open_incident;
      card.append(
        el("p", { class: "verdict alert", id: `verdict-${r.resident_id}` }, `⚠ 有事件正在处理 · Open incident: ${SHG.typeLabel(inc.type)}`),
        el("div", { class: "open" },
          el("p", { text: `状态 State: ${SHG.stateLabel(inc.state)}` }),
          el("p", { text: `发生时间 Raised: ${SHG.clock(inc.raised_at)}` }),
          el("p", { text: `处理人 Who: ${handler(inc)}` }),
          inc.on_scene_at ? el("p", { text: `到场时间 On scene: ${SHG.clock(inc.on_scene_at)}` }) : null));
    } else {
      card.append(el("p", { class: "verdict unknown" }, "未共享事件信息 · Incidents are not shared with you"));
    }
    if (r.vitals_shared) {
      const v = r.vitals;
      card.append(el("h3", { text: "最近体征 Latest vitals" }), el("p", {}, v
        ? `心率 ${v.heart_rate ?? "—"} · 呼吸 ${v.breathing_rate ?? "—"} (${SHG.clock(v.time)})`
        : "24 小时内无数据 · no data in 24 h"));
    }
    if (Array.isArray(r.recent_incidents)) {
      card.append(el("h3", { text: "近期记录 Recent history" }));
      card.append(r.recent_incidents.length
        ? el("ul", {}, ...r.recent_incidents.map((i) => el("li", {},
          `${SHG.clock(i.raised_at)} · ${SHG.typeLabel(i.type)} · ${SHG.stateLabel(i.state)}` +
          (i.outcome ? ` · ${SHG.outcomeLabel(i.outcome)}` : ""))))
        : el("p", { class: "muted", text: "无记录 · nothing recorded" }));
    }
    return card;
  }

  async function load() {
    try {
      const mine = await api("/family/residents");
      const details = await Promise.all(
        mine.map((m) => api(`/family/residents/${encodeURIComponent(m.resident_id)}`)));
      ui.list.replaceChildren(...(details.length ? details.map(relativeCard)
        : [el("p", { class: "muted", text: "没有关联的家人 · no linked relatives" })]));
      ui.updated.textContent = `更新于 Updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
      ui.updated.hidden = false;
      clearError();
    } catch (err) {
      if (err instanceof SHG.ApiError && err.status === 401) { signOut("请重新登录 · Please sign in again"); return; }
      showError(`无法更新 Could not update: ${err.message || err}`);
    }
  }

  function start() {
    ui.login.hidden = true;
    ui.list.hidden = false;
    ui.signOut.hidden = false;
    load();
    clearInterval(timer);
    timer = setInterval(() => { if (!document.hidden) load(); }, POLL_MS);
  }

  function signOut(message) {
    clearInterval(timer);
    SHG.signOut();
    ui.list.replaceChildren();
    ui.list.hidden = true;
    ui.updated.hidden = true;
    ui.login.hidden = false;
    ui.signOut.hidden = true;
    if (message) showError(message);
  }
  ui.signOut.addEventListener("click", () => signOut());
  document.addEventListener("visibilitychange", () => { if (!document.hidden && SHG.token()) load(); });

  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (tok.role !== "family") {
        SHG.signOut();
        showError("此页面供家属使用；工作人员请使用值班台 / · For family members; staff use the console at /");
        return;
      }
      start();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401
        ? "用户名或密码错误 · Incorrect username or password" : `登录失败 Sign-in failed: ${err.message || err}`);
    }
  });

  if (SHG.token() && SHG.role() === "family") start();
})();
