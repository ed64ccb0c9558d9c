/* The duty staff console: open incidents live from the stream, SLA countdowns, the alarm for
 * new emergencies, lifecycle actions and the resident context card.
 *
 * The stream (GET /incidents/stream) needs the Authorization header, which EventSource cannot
 * send, so it is read with fetch() and a stream reader; on any end or error it reconnects with
 * Last-Event-ID, and every event simply re-reads the list (the list is the source of truth).
 *
 * Reconcile: whatever the stream delivers, the list is also re-read every reconcile interval
 * (api.console_reconcile_s from GET /console/config, at most 10 s; RECONCILE_DEFAULT_MS until
 * it is known). A stream stalled on the way (a proxy, a sleeping tablet) or an event lost
 * cannot hide an incident for longer: an emergency found by a reconcile is shown and sounds
 * exactly like a live one (same refresh(), same updateAlarm()). */
"use strict";

(() => {
  const { api, el } = SHG;
  const ACK_SLA_S = 60; // answer-time standard: acknowledge within 60 s
  const ALARM_TYPES = new Set(["emergency_call", "fall"]);
  const STAFF_ROLES = new Set(["duty_staff", "supervisor", "admin"]);
  const BEEP_EVERY_MS = 2000;
  const RECONCILE_DEFAULT_MS = 10000; // the setting's default and maximum (10 s)

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    board: $("board"), rows: $("incident-rows"), empty: $("empty"), count: $("count"),
    detail: $("detail"), alarm: $("alarm"), alarmText: $("alarm-text"), error: $("error"),
    errorText: $("error-text"), feed: $("feed-status"), mute: $("mute"), signOut: $("sign-out"),
  };

  const state = {
    incidents: [],
    selectedId: null,
    selected: null, // the selected incident with its timeline
    card: null, // the selected incident's resident card
    cards: new Map(), // resident id -> card (name, home address) read this session
    lastEventId: null,
    alarmed: new Set(), // emergency incident ids already announced
    muted: false,
    audio: null,
    beeps: 0,
    stream: null, // AbortController of the running stream
    refreshTimer: null,
    reconcileTimer: null,
    reconcileWorker: null,
    reconcileMs: RECONCILE_DEFAULT_MS,
    reconciles: 0,
    live: false,
  };

  // -- errors ------------------------------------------------------------------------------

  function showError(err) {
    let text = err instanceof SHG.ApiError ? err.detail : String(err && err.message || err);
    if (err instanceof SHG.ApiError) {
      if (err.status === 409) text = `操作冲突 Conflict (409): 事件状态已变化，可能已有同事处理 — ${err.detail}`;
      else if (err.status === 403) text = `无权限 Not allowed (403): ${err.detail}`;
      else if (err.status === 404) text = `未找到 Not found (404): ${err.detail}`;
      else if (err.status === 422) text = `输入有误 Invalid input (422): ${err.detail}`;
      else text = `错误 Error (${err.status}): ${err.detail}`;
    }
    ui.errorText.textContent = text;
    ui.error.hidden = false;
  }
  function clearError() { ui.error.hidden = true; ui.errorText.textContent = ""; }
  $("error-close").addEventListener("click", clearError);

  function handleAuthLoss(err) {
    if (err instanceof SHG.ApiError && err.status === 401) {
      signOut("登录已过期，请重新登录 · Session expired, please sign in again");
      return true;
    }
    return false;
  }

  // -- sound -------------------------------------------------------------------------------

  /* Browsers only start audio after a user gesture: this runs in the sign-in click. */
  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!state.audio) state.audio = new Ctx();
    if (state.audio.state === "suspended") state.audio.resume().catch(() => {});
  }

  function beep() {
    state.beeps += 1;
    document.body.dataset.beeps = String(state.beeps);
    const ctx = state.audio;
    document.body.dataset.audio = ctx ? ctx.state : "none";
    if (!ctx || ctx.state !== "running") return;
    const t = ctx.currentTime;
    for (const [i, freq] of [[0, 880], [1, 660], [2, 880]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.3, t + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.25 + 0.22);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t + i * 0.25);
      osc.stop(t + i * 0.25 + 0.24);
    }
  }

  // -- alarm -------------------------------------------------------------------------------

  const alarming = () =>
    state.incidents.filter((i) => i.state === "raised" && ALARM_TYPES.has(i.type));

  function updateAlarm() {
    const open = alarming();
    let fresh = false;
    for (const inc of open) {
      if (!state.alarmed.has(inc.id)) { state.alarmed.add(inc.id); fresh = true; }
    }
    if (fresh) { state.muted = false; beep(); }
    if (open.length === 0) {
      ui.alarm.hidden = true;
      ui.mute.hidden = true;
      return;
    }
    const first = open[0];
    const where = residentWhere(first);
    const who = residentLabel(first) + (where ? ` (${where})` : "");
    ui.alarmText.textContent = open.length === 1
      ? `新紧急事件 NEW EMERGENCY: ${SHG.typeLabel(first.type)} — ${who} — 请立即确认 acknowledge now`
      : `${open.length} 个紧急事件待确认 EMERGENCIES waiting: ${SHG.typeLabel(first.type)} — ${who} …`;
    ui.alarm.hidden = false;
    ui.mute.hidden = false;
    ui.mute.textContent = state.muted ? "已静音 Muted" : "静音 Mute";
  }

  setInterval(() => {
    if (!state.muted && alarming().length > 0) beep();
  }, BEEP_EVERY_MS);

  ui.alarm.addEventListener("click", () => {
    const first = alarming()[0];
    if (first) select(first.id);
  });

  ui.mute.addEventListener("click", () => {
    state.muted = true;
    ui.mute.textContent = "已静音 Muted";
  });

  // -- the incident list -------------------------------------------------------------------

  function residentLabel(inc) {
    const card = inc.resident_id ? state.cards.get(inc.resident_id) : null;
    if (card) return card.display_name || card.elder_code || inc.resident_id;
    return inc.resident_id || inc.subject;
  }
  /* Where to go: the list carries the bed code and the room (nursing home) or household
   * label (home care); the home address only comes with the audited resident card. */
  function residentWhere(inc) {
    const card = inc.resident_id ? state.cards.get(inc.resident_id) : null;
    const label = inc.location_label
      ? (inc.location_kind === "home" ? `居家 Home: ${inc.location_label}` : inc.location_label)
      : null;
    const parts = [inc.bed_code && `床位 Bed ${inc.bed_code}`, label, card && card.address];
    const where = parts.filter(Boolean).join(" · ");
    return where || (inc.resident_id ? "" : "设备/位置 device/location");
  }

  const elapsedS = (iso) => Math.max(0, (SHG.now() - Date.parse(iso)) / 1000);

  function slaCell(inc) {
    if (inc.state === "raised") {
      const left = ACK_SLA_S - elapsedS(inc.raised_at);
      return left > 0
        ? { cls: "sla sla-ok", text: `剩 ${Math.ceil(left)} 秒 to ack` }
        : { cls: "sla sla-over", text: `超时 OVERDUE +${SHG.duration(-left)}` };
    }
    const took = inc.time_to_acknowledge_s;
    if (took === null || took === undefined) return { cls: "sla", text: "—" };
    return took <= ACK_SLA_S
      ? { cls: "sla sla-done", text: `${Math.round(took)} 秒内接单 acked` }
      : { cls: "sla sla-over", text: `${SHG.duration(took)} 接单 (late)` };
  }

  function renderList() {
    ui.rows.replaceChildren(...state.incidents.map((inc) => {
      const sla = slaCell(inc);
      const row = el("tr", {
        class: `row p${inc.priority} state-${inc.state}${inc.id === state.selectedId ? " selected" : ""}`,
        "data-incident-id": inc.id, "data-state": inc.state, tabindex: "0",
        onclick: () => select(inc.id),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(inc.id); } },
      },
      el("td", {}, SHG.typeLabel(inc.type), el("span", { class: "sub", text: `#${inc.id} · P${inc.priority}` })),
      el("td", {}, residentLabel(inc), el("span", { class: "sub where", text: residentWhere(inc) })),
      el("td", { class: "state", text: SHG.stateLabel(inc.state) }),
      el("td", { class: "age", "data-raised": inc.raised_at, text: SHG.duration(elapsedS(inc.raised_at)) }),
      el("td", {}, el("span", { class: sla.cls, text: sla.text })));
      return row;
    }));
    ui.count.textContent = String(state.incidents.length);
    ui.empty.hidden = state.incidents.length > 0;
  }

  function tick() {
    for (const row of ui.rows.children) {
      const inc = state.incidents.find((i) => String(i.id) === row.dataset.incidentId);
      if (!inc) continue;
      row.querySelector(".age").textContent = SHG.duration(elapsedS(inc.raised_at));
      const sla = slaCell(inc);
      const span = row.querySelector(".sla");
      span.className = sla.cls;
      span.textContent = sla.text;
    }
  }
  setInterval(tick, 1000);

  async function refresh() {
    try {
      state.incidents = await api("/incidents?state=open");
      renderList();
      updateAlarm();
      if (state.selectedId !== null) await loadSelected(false);
    } catch (err) {
      if (!handleAuthLoss(err)) showError(err);
    }
  }
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refresh, 150);
  }

  // -- reconcile: re-read the list every reconcile interval, whatever the stream does ------

  async function reconcile() {
    state.reconciles += 1;
    document.body.dataset.reconciles = String(state.reconciles);
    await refresh();
  }
  /* The clock runs in a worker (console-timer.js): a background tab's own timers are
   * throttled to once a minute by the browser, a worker's messages are not. A plain
   * interval is the fallback where the worker cannot run. */
  function stopReconcile() {
    clearInterval(state.reconcileTimer);
    state.reconcileTimer = null;
    if (state.reconcileWorker) state.reconcileWorker.terminate();
    state.reconcileWorker = null;
  }
  function fallbackClock() {
    stopReconcile();
    document.body.dataset.reconcileClock = "timer";
    state.reconcileTimer = setInterval(reconcile, state.reconcileMs);
  }
  function startReconcile() {
    stopReconcile();
    document.body.dataset.reconcileMs = String(state.reconcileMs);
    try {
      const worker = new Worker("/static/console-timer.js");
      worker.onmessage = () => { reconcile(); };
      worker.onerror = fallbackClock;
      worker.postMessage({ intervalMs: state.reconcileMs });
      state.reconcileWorker = worker;
      document.body.dataset.reconcileClock = "worker";
    } catch {
      fallbackClock();
    }
  }
  // Back from a background tab, a sleeping tablet or a lost network: reconcile at once.
  const reconcileNow = () => { if (SHG.token() && !ui.board.hidden) reconcile(); };
  document.addEventListener("visibilitychange", () => { if (!document.hidden) reconcileNow(); });
  window.addEventListener("online", reconcileNow);
  async function loadReconcileInterval() {
    try {
      const cfg = await api("/console/config");
      const ms = Math.round(Number(cfg.reconcile_s) * 1000);
      if (ms >= 500 && ms <= RECONCILE_DEFAULT_MS && ms !== state.reconcileMs) {
        state.reconcileMs = ms;
        startReconcile();
      }
    } catch (err) {
      handleAuthLoss(err); // otherwise keep the default interval
    }
  }

  // -- the stream --------------------------------------------------------------------------

  function setLive(on) {
    state.live = on;
    ui.feed.className = on ? "feed feed-on" : "feed feed-off";
    ui.feed.textContent = on ? "实时 Live: 已连接 connected" : "实时 Live: 重连中 reconnecting…";
  }

  /* Every event re-reads the list; a raised emergency is announced by updateAlarm(). */
  function onEvent(_ev) {
    scheduleRefresh();
  }

  async function runStream() {
    const ctrl = new AbortController();
    state.stream = ctrl;
    let retryMs = 1000;
    while (!ctrl.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${await SHG.validToken()}`, Accept: "text/event-stream" };
        if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
        const resp = await fetch("/incidents/stream", { headers, signal: ctrl.signal, cache: "no-store" });
        if (resp.status === 401) {
          if (await SHG.refresh()) continue; // renewed: connect again at once
          signOut("登录已过期 · Session expired"); return;
        }
        if (!resp.ok || !resp.body) throw new Error(`stream answered ${resp.status}`);
        setLive(true);
        scheduleRefresh(); // whatever happened while (re)connecting
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
            const frame = buf.slice(0, cut);
            buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
            let data = "";
            let id = null;
            for (const line of frame.split(/\r?\n/)) {
              if (line.startsWith(":")) continue;
              const i = line.indexOf(":");
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (field === "id") id = val;
              else if (field === "data") data += (data ? "\n" : "") + val;
              else if (field === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
            }
            if (id !== null) state.lastEventId = id;
            if (data) {
              try { onEvent(JSON.parse(data)); } catch { /* a malformed event: skip it */ }
            }
          }
        }
      } catch (err) {
        if (ctrl.signal.aborted || handleAuthLoss(err)) return;
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  // -- the selected incident ---------------------------------------------------------------

  async function select(id) {
    clearError();
    state.selectedId = id;
    state.selected = null;
    state.card = null;
    for (const row of ui.rows.children) {
      row.classList.toggle("selected", row.dataset.incidentId === String(id));
    }
    await loadSelected(true);
  }

  async function loadSelected(withCard) {
    const id = state.selectedId;
    try {
      const inc = await api(`/incidents/${id}`);
      if (state.selectedId !== id) return;
      state.selected = inc;
      if (withCard && inc.resident_id) {
        const card = await api(`/residents/${encodeURIComponent(inc.resident_id)}`); // audited read
        if (state.selectedId !== id) return;
        state.card = card;
        state.cards.set(inc.resident_id, card);
        renderList();
        updateAlarm(); // the banner can name the bed and room now
      }
      renderDetail();
    } catch (err) {
      if (!handleAuthLoss(err)) showError(err);
    }
  }

  async function act(path, body) {
    const id = state.selectedId;
    clearError();
    try {
      await api(`/incidents/${id}/${path}`, { method: "POST", body });
      await refresh();
    } catch (err) {
      if (!handleAuthLoss(err)) showError(err);
      await refresh();
    }
  }

  function facts(pairs) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of pairs) {
      if (v === null || v === undefined || v === "") continue;
      dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    }
    return dl;
  }

  function actionsFor(inc) {
    const box = el("div", { class: "actions", id: "actions", "data-for": `${inc.id}:${inc.state}` });
    const s = inc.state;
    if (s === "raised") {
      box.append(el("button", { id: "act-acknowledge", class: "primary", type: "button",
        onclick: () => act("acknowledge", undefined) }, "确认接单 Acknowledge"));
    }
    if (s === "acknowledged") {
      const responder = el("input", { id: "responder", placeholder: "派出人员编号 Responder id",
        maxlength: "64", "aria-label": "派出人员 Responder" });
      box.append(el("form", { class: "rowform", onsubmit: (e) => {
        e.preventDefault();
        const who = responder.value.trim();
        if (!who) { showError("请填写派出人员 Enter a responder"); return; }
        act("dispatch", { responder: who });
      } }, responder, el("button", { id: "act-dispatch", type: "submit" }, "派人 Dispatch")));
    }
    if (s === "dispatched") {
      box.append(el("button", { id: "act-on-scene", type: "button",
        onclick: () => act("on-scene", undefined) }, "已到场 On scene"));
    }
    if (s === "acknowledged" || s === "dispatched" || s === "on_scene") {
      const outcome = el("select", { id: "outcome", "aria-label": "处理结果 Outcome" },
        el("option", { value: "", text: "— 处理结果 Outcome —" }),
        ...Object.keys(SHG.OUTCOME_LABELS).filter((o) => o !== "condition_cleared")
          .map((o) => el("option", { value: o, text: SHG.outcomeLabel(o) })));
      const notes = el("textarea", { id: "notes", maxlength: "2000",
        placeholder: "备注 Notes (不要写入不必要的个人信息 no needless personal data)" });
      box.append(el("form", { class: "rowform", onsubmit: (e) => {
        e.preventDefault();
        if (!outcome.value) { showError("请选择处理结果 Choose an outcome"); return; }
        act("resolve", { outcome: outcome.value, notes: notes.value.trim() || null });
      } }, outcome, notes, el("button", { id: "act-resolve", class: "danger", type: "submit" }, "结案 Resolve")));
    }
    if (!box.children.length) box.append(el("p", { class: "empty", text: "无可用操作 No actions" }));
    return box;
  }

  function cardView(card) {
    const flags = el("p", {},
      card.high_risk ? el("span", { class: "flag", text: "高风险 High risk" }) : null,
      card.lives_alone ? el("span", { class: "flag", text: "独居 Lives alone" }) : null);
    const v = card.last_vitals;
    const vitals = v
      ? `心率 HR ${v.heart_rate ?? "—"} · 呼吸 RR ${v.breathing_rate ?? "—"} · ` +
        `${v.presence === true ? "在床 in bed" : v.presence === false ? "离床 out of bed" : ""} (${SHG.clock(v.time)})`
      : "24 小时内无数据 No vitals in 24 h";
    return el("div", { id: "resident-card" },
      el("h3", { text: "住户 Resident" }),
      flags,
      facts([
        ["姓名 Name", card.display_name], ["编号 Elder code", card.elder_code],
        ["床位 Bed", card.bed_code], ["房间 Room", card.room], ["地址 Address", card.address],
        ["护理等级 Care level", card.care_level], ["最近体征 Last vitals", vitals],
      ]),
      el("h3", { text: "联系人 Contacts" }),
      card.contacts && card.contacts.length
        ? el("ul", { class: "history" }, ...card.contacts.map((c) => el("li", {},
          `${c.display_name}${c.relation ? ` (${c.relation})` : ""} · ${c.phone || c.email || "—"}`)))
        : el("p", { class: "empty", text: "无联系人 None" }),
      el("h3", { text: "近期事件 Recent incidents" }),
      el("ul", { class: "history" }, ...(card.recent_incidents || []).map((r) => el("li", {},
        `${SHG.clock(r.raised_at)} · ${SHG.typeLabel(r.type)} · ${SHG.stateLabel(r.state)}` +
        (r.outcome ? ` · ${SHG.outcomeLabel(r.outcome)}` : "")))));
  }

  function renderDetail() {
    const inc = state.selected;
    if (!inc) return;
    // Live events re-render the panel; keep the action forms of an unchanged incident so a
    // responder id or notes being typed are not wiped by someone else's update.
    const prev = document.getElementById("actions");
    const actions = prev && prev.dataset.for === `${inc.id}:${inc.state}` ? prev : actionsFor(inc);
    ui.detail.replaceChildren(
      el("h2", { id: "detail-title" }, `${SHG.typeLabel(inc.type)} #${inc.id}`),
      el("p", { class: "state", id: "detail-state", "data-state": inc.state, text: SHG.stateLabel(inc.state) }),
      facts([
        ["发生 Raised", SHG.clock(inc.raised_at)],
        ["原因 Reason", inc.reason],
        ["触发次数 Triggers", inc.trigger_count > 1 ? inc.trigger_count : null],
        ["接单人 Acknowledged by", inc.acknowledged_by],
        ["接单用时 Time to ack", inc.time_to_acknowledge_s != null ? SHG.duration(inc.time_to_acknowledge_s) : null],
        ["派出 Responder", inc.responder],
        ["结果 Outcome", inc.outcome && SHG.outcomeLabel(inc.outcome)],
      ]),
      actions,
      state.card ? cardView(state.card) : null,
      el("h3", { text: "时间线 Timeline" }),
      el("ol", { class: "timeline", id: "timeline" }, ...timelineItems(inc)),
    );
  }

  // -- the timeline: state changes merged with escalation steps, pages and messages ---------

  const TIER_LABELS = {
    duty_staff: "值班护工 Duty staff", supervisor: "主管 Supervisor",
    contacts: "家属/社区 Contacts", emergency: "紧急呼救 Emergency",
  };
  const ROLE_LABELS = {
    duty_staff: "值班护工 Duty staff", supervisor: "主管 Supervisor", admin: "管理员 Admin",
  };
  const CHANNEL_LABELS = {
    console: "值班台 Console", sms: "短信 SMS", voice: "语音电话 Voice call", email: "邮件 E-mail",
    webhook: "推送 Webhook", wecom: "企业微信 WeCom", dingtalk: "钉钉 DingTalk",
    feishu: "飞书 Feishu", bot: "群机器人 Group bot", wechat: "微信 WeChat",
  };
  const STATUS_LABELS = {
    posted: "已推送 posted", queued: "排队中 queued", sending: "发送中 sending",
    retrying: "重试中 retrying", delivered: "已送达 delivered", failed: "失败 failed",
  };
  const STOP_LABELS = {
    acknowledged: "已接单 acknowledged", dispatched: "已派人 dispatched", on_scene: "已到场 on scene",
    resolved: "已处理 resolved", closed: "已关闭 closed", cancelled: "已取消 cancelled",
    "no applicable tier": "无适用级别 no tier applies",
  };
  const ACK_VIA_LABELS = { link: "链接 link", sms: "短信回复 SMS reply" };
  const PAGE_LABELS = { page: "呼叫 Paged", reminder: "再次提醒 Reminder", instruction: "紧急指示 Instruction" };
  const label = (table, code) => (code == null ? "" : table[code] || code);
  const tierLabel = (name) => label(TIER_LABELS, name);
  function channelLabel(channel) {
    if (!channel) return "";
    const [kind, name] = channel.split(":");
    return label(CHANNEL_LABELS, kind) + (name ? ` (${name})` : "");
  }
  /* Who, by role or relation only (the API never sends names, logins or numbers). */
  function whoLabel(r) {
    if (!r) return "";
    if (r.kind === "all_staff") return "全体值班人员 All staff";
    if (r.kind === "staff") return (r.label ? `${r.label} · ` : "") + (label(ROLE_LABELS, r.role) || "员工 Staff");
    const kind = r.kind === "community_worker" ? "社区工作者 Community worker" : "家属 Family";
    return kind + (r.relation ? ` (${r.relation})` : "");
  }

  function escalationText(e) {
    switch (e.kind) {
      case "tier":
        return `升级 Escalated → ${tierLabel(e.tier_name)} · 已通知 ${e.reached} reached`;
      case "tier_skipped":
        return `跳过 Skipped ${tierLabel(e.tier_name)} · 无人可通知 nobody to reach`;
      case "reminder":
        return `提醒 Reminder #${e.sequence} · ${tierLabel(e.tier_name)}`;
      case "unreachable":
        return "无人可达，稍后重试 Nobody reachable yet, retrying";
      case "stopped":
        return `停止升级 Escalation stopped · ${label(STOP_LABELS, e.reason)}`;
      case "page":
        return `${label(PAGE_LABELS, e.page_kind)} → ${whoLabel(e.recipient)} · ${channelLabel(e.channel)}`;
      case "notification": {
        const n = (e.attempts || []).length;
        const when = e.result_at
          ? ` ${new Date(e.result_at).toLocaleTimeString("zh-CN", { hour12: false })}` : "";
        const why = e.status === "failed" && e.detail ? ` — ${e.detail}` : "";
        return `通知 Message → ${whoLabel(e.recipient)} · ${channelLabel(e.channel)} · ` +
          `${label(STATUS_LABELS, e.status)}${when}` + (n > 1 ? ` (${n} 次 attempts)` : "") + why;
      }
      case "page_ack":
        return `消息内确认 Acknowledged from the message → ${whoLabel(e.recipient)} · ` +
          `${label(ACK_VIA_LABELS, e.channel)}` +
          (e.status === "already_acknowledged" ? " · 已有他人确认 someone was first" : "");
      default:
        return e.kind;
    }
  }

  /* Both lists are in order; merge them by time, keeping each one's own order. */
  function timelineItems(inc) {
    const states = inc.timeline || [];
    const steps = inc.escalation || [];
    const items = [];
    let i = 0;
    let j = 0;
    while (i < states.length || j < steps.length) {
      const takeState = j >= steps.length ||
        (i < states.length && Date.parse(states[i].time) <= Date.parse(steps[j].time));
      if (takeState) {
        const e = states[i++];
        items.push(el("li", { "data-kind": e.kind }, `${SHG.clock(e.time)} · ${e.kind} · ${e.actor}`));
      } else {
        const e = steps[j++];
        items.push(el("li", { class: `esc esc-${e.kind}`, "data-kind": `escalation.${e.kind}`,
          "data-status": e.status || null }, `${SHG.clock(e.time)} · ${escalationText(e)}`));
      }
    }
    return items;
  }

  // -- sign-in -----------------------------------------------------------------------------

  function showBoard() {
    ui.login.hidden = true;
    ui.board.hidden = false;
    ui.signOut.hidden = false;
    setLive(false);
    refresh();
    startReconcile();
    loadReconcileInterval();
    runStream();
  }

  function signOut(message) {
    if (state.stream) state.stream.abort();
    stopReconcile();
    SHG.signOut();
    Object.assign(state, { incidents: [], selectedId: null, selected: null, card: null, lastEventId: null });
    state.cards.clear();
    ui.board.hidden = true;
    ui.login.hidden = false;
    ui.signOut.hidden = true;
    ui.alarm.hidden = true;
    ui.mute.hidden = true;
    ui.feed.className = "feed feed-off";
    ui.feed.textContent = "实时 Live: 未连接 offline";
    if (message) showError(message);
  }
  ui.signOut.addEventListener("click", () => signOut());

  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    unlockAudio(); // the click is the user gesture that lets the alarm sound
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (!STAFF_ROLES.has(tok.role)) {
        SHG.signOut();
        showError("此页面仅供值班人员使用；家属请使用 /family · Staff only; family members use /family");
        return;
      }
      showBoard();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401
        ? "用户名或密码错误 · Incorrect username or password" : err);
    }
  });

  // A reload within the tab keeps the session; sound needs one click to be allowed again.
  if (SHG.token() && STAFF_ROLES.has(SHG.role())) {
    document.addEventListener("click", unlockAudio, { once: true });
    showBoard();
  }
})();

/* Test mode banner (issue 10 §5): beds and devices under an installer's acceptance test, with
 * a countdown to the test's deadline. Reads GET /test-mode every 10 s while a staff member is
 * signed in; the countdown uses the server's clock (`now` of the answer). A separate block:
 * it shares only SHG with the console above. */
(() => {
  const { api, el } = SHG;
  const STAFF_ROLES = new Set(["duty_staff", "supervisor", "admin"]);
  const banner = document.getElementById("test-mode");
  let tests = [];
  let offsetMs = 0; // server clock - browser clock
  let signedIn = false; // a staff token was seen at the last poll

  function mmss(s) {
    const v = Math.max(0, Math.round(s));
    return `${Math.floor(v / 60)}:${String(v % 60).padStart(2, "0")}`;
  }

  function render() {
    const now = Date.now() + offsetMs;
    const live = tests.filter((t) => Date.parse(t.expires_at) > now);
    banner.hidden = live.length === 0;
    if (banner.hidden) { banner.replaceChildren(); return; }
    banner.replaceChildren(
      el("strong", { text: `测试中 Under test（${live.length}）：以下床位/设备正在安装验收，测试期间第二次按键仍会报警 · ` +
        "acceptance test in progress; any alarm other than the test step still raises an incident" }),
      el("ul", {}, ...live.map((t) => el("li", { "data-test-id": t.test_id },
        `床位 Bed ${t.bed_code || "—"} · 房间 Room ${t.location || "—"} · 设备 Device ${t.device_id} · 剩余 Remaining `,
        el("span", { class: "countdown", text: mmss((Date.parse(t.expires_at) - now) / 1000) })))));
  }

  async function poll() {
    signedIn = Boolean(SHG.token()) && STAFF_ROLES.has(SHG.role());
    if (!signedIn) { tests = []; render(); return; }
    try {
      const rows = await api("/test-mode");
      if (rows.length) offsetMs = Date.parse(rows[0].now) - Date.now();
      tests = rows;
    } catch (_err) {
      tests = []; // signed out or no access: the console above reports errors
    }
    render();
  }

  // Every second: the countdown, and a first poll as soon as a staff member signs in.
  setInterval(() => {
    if (!signedIn && SHG.token()) poll(); else if (signedIn && !SHG.token()) poll(); else render();
  }, 1000);
  setInterval(poll, 10000);
  document.addEventListener("DOMContentLoaded", poll);
})();
