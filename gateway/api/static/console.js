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
  const { api, el, t } = SHG;
  const ACK_SLA_S = 60; // until the site's targets are known (GET /console/site)
  const ALARM_TYPES = new Set(["emergency_call", "fall", "smoke_alarm", "gas_alarm"]); // P1: banner and sound
  const STAFF_ROLES = new Set(["duty_staff", "supervisor", "admin"]);
  const BEEP_EVERY_MS = 2000;
  const RECONCILE_DEFAULT_MS = 10000; // the setting's default and maximum (10 s)

  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    board: $("board"), rows: $("incident-rows"), empty: $("empty"), count: $("count"),
    techRows: $("tech-rows"), techCount: $("tech-count"), careEmpty: $("care-empty"),
    techEmpty: $("tech-empty"), resolvedPane: $("resolved-pane"), resolvedRows: $("resolved-rows"),
    targets: $("targets"), siteClock: $("site-clock"), lang: $("lang"),
    handover: $("handover-button"), boardButton: $("board-button"),
    detail: $("detail"), alarm: $("alarm"), alarmText: $("alarm-text"), error: $("error"),
    errorText: $("error-text"), feed: $("feed-status"), mute: $("mute"), signOut: $("sign-out"),
  };

  /* One header for the care and the technical table (the second column names the resident or
   * the device); data-i18n: the language switch translates it with the rest of the page. */
  const listHeader = (whoKey) => el("thead", {}, el("tr", {},
    ...["col.type", whoKey, "col.state", "col.age", "col.target"]
      .map((key) => el("th", { scope: "col", "data-i18n": key, text: t(key) }))));
  $("incidents").prepend(listHeader("col.who"));
  $("tech-incidents").prepend(listHeader("col.device"));

  const state = {
    incidents: [],
    resolved: [], // resolved incidents awaiting a supervisor's close
    people: new Map(), // user id -> { display_name, role }
    site: null, // GET /console/site: name, UTC offset, targets
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
      const detail = err.detail;
      if (err.status === 409) text = t("err.conflict", { detail });
      else if (err.status === 403) text = t("err.forbidden", { detail });
      else if (err.status === 404) text = t("err.not_found", { detail });
      else if (err.status === 422) text = t("err.invalid", { detail });
      else text = t("err.other", { status: err.status, detail });
    }
    ui.errorText.textContent = text;
    ui.error.hidden = false;
  }
  function clearError() { ui.error.hidden = true; ui.errorText.textContent = ""; }
  $("error-close").addEventListener("click", clearError);

  function handleAuthLoss(err) {
    if (err instanceof SHG.ApiError && err.status === 401) {
      signOut(t("session.expired"));
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

  /* Only raised care emergencies sound and show the banner; technical incidents never do. */
  const alarming = () =>
    state.incidents.filter((i) => i.state === "raised" && !i.technical && ALARM_TYPES.has(i.type));

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
    const type = SHG.typeLabel(first.type);
    ui.alarmText.textContent = open.length === 1
      ? t("alarm.one", { type, who }) : t("alarm.many", { n: open.length, type, who });
    ui.alarm.hidden = false;
    ui.mute.hidden = false;
    ui.mute.textContent = state.muted ? t("muted") : t("mute");
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
    ui.mute.textContent = t("muted");
  });

  // -- the incident list -------------------------------------------------------------------

  /* Who: the resident's name (the list carries it for staff, audited once per shift), or for
   * a device incident the device and where it is. */
  function residentLabel(inc) {
    const card = inc.resident_id ? state.cards.get(inc.resident_id) : null;
    if (inc.technical && inc.device_kind) return SHG.kindLabel(inc.device_kind);
    if (card && card.display_name) return card.display_name;
    if (inc.resident_name) return inc.resident_name;
    if (inc.technical) return SHG.typeLabel(inc.type);
    return inc.resident_id || inc.subject;
  }
  /* Where to go: the bed code and the room (nursing home) or household label (home care);
   * for a device, its own place; the home address only comes with the audited card. */
  function residentWhere(inc) {
    const card = inc.resident_id ? state.cards.get(inc.resident_id) : null;
    const label = inc.location_label
      ? (inc.location_kind === "home" ? t("home", { label: inc.location_label }) : inc.location_label)
      : (inc.device_location_label || null);
    const parts = [
      inc.bed_code && t("bed", { code: inc.bed_code }), label,
      inc.technical && inc.resident_name ? inc.resident_name : null,
      card && card.address,
    ];
    const where = parts.filter(Boolean).join(" · ");
    return where || t("unknown_place");
  }
  const targetOf = (inc) => Number(inc.target_s) || ACK_SLA_S;

  const elapsedS = (iso) => Math.max(0, (SHG.now() - Date.parse(iso)) / 1000);

  /* The countdown against the incident's own target: care incidents turn red when late,
   * technical ones (hours to fix) only turn amber, never red and never "OVERDUE". */
  function slaCell(inc) {
    const target = targetOf(inc);
    if (inc.state === "raised") {
      const left = target - elapsedS(inc.raised_at);
      if (inc.technical) {
        return left > 0
          ? { cls: "sla sla-tech", text: t("sla.tech_left", { t: SHG.duration(left) }) }
          : { cls: "sla sla-tech-late", text: t("sla.tech_over", { t: SHG.duration(-left) }) };
      }
      return left > 0
        ? { cls: "sla sla-ok", text: t("sla.left", { t: SHG.duration(Math.ceil(left)) }) }
        : { cls: "sla sla-over", text: t("sla.over", { t: SHG.duration(-left) }) };
    }
    const took = inc.time_to_acknowledge_s;
    if (took === null || took === undefined) return { cls: "sla", text: "—" };
    if (took <= target) return { cls: "sla sla-done", text: t("sla.acked", { t: SHG.duration(took) }) };
    return { cls: inc.technical ? "sla sla-tech-late" : "sla sla-over",
      text: t("sla.acked_late", { t: SHG.duration(took) }) };
  }

  function rowOf(inc) {
    const sla = slaCell(inc);
    return el("tr", {
      class: `row p${inc.priority} ${inc.technical ? "tech" : "care"} state-${inc.state}` +
        (inc.id === state.selectedId ? " selected" : ""),
      "data-incident-id": inc.id, "data-state": inc.state, "data-category": inc.category,
      tabindex: "0",
      onclick: () => select(inc.id),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(inc.id); } },
    },
    el("td", { class: "type" }, SHG.typeLabel(inc.type), el("span", { class: "sub", text: `#${inc.id} · P${inc.priority}` })),
    el("td", { class: "who" }, residentLabel(inc), el("span", { class: "sub where", text: residentWhere(inc) })),
    el("td", { class: "state", text: SHG.stateLabel(inc.state) }),
    el("td", { class: "age", "data-raised": inc.raised_at, text: SHG.duration(elapsedS(inc.raised_at)) }),
    el("td", {}, el("span", { class: sla.cls, text: sla.text })));
  }

  function renderList() {
    const care = state.incidents.filter((i) => !i.technical);
    const tech = state.incidents.filter((i) => i.technical);
    // A keyboard user's row keeps the focus across re-renders (every event and reconcile).
    const focused = document.activeElement && document.activeElement.closest("tr.row");
    ui.rows.replaceChildren(...care.map(rowOf));
    ui.techRows.replaceChildren(...tech.map(rowOf));
    if (focused && !focused.isConnected) {
      const again = document.querySelector(`tr.row[data-incident-id="${focused.dataset.incidentId}"]`);
      if (again) again.focus({ preventScroll: true });
    }
    ui.count.textContent = String(care.length);
    ui.techCount.textContent = String(tech.length);
    ui.careEmpty.hidden = care.length > 0 || tech.length === 0;
    ui.techEmpty.hidden = tech.length > 0 || care.length === 0;
    ui.empty.hidden = state.incidents.length > 0;
    renderResolved();
  }

  /* Supervisors: resolved incidents waiting for their review and close. */
  function renderResolved() {
    const senior = SHG.role() === "supervisor" || SHG.role() === "admin";
    ui.resolvedPane.hidden = !senior || state.resolved.length === 0;
    ui.resolvedRows.replaceChildren(...state.resolved.map((inc) => el("li", {},
      el("button", { type: "button", class: "linkish", "data-incident-id": inc.id,
        onclick: () => select(inc.id) },
      `#${inc.id} ${SHG.typeLabel(inc.type)} · ${residentLabel(inc)} · ` +
        `${inc.outcome ? SHG.outcomeLabel(inc.outcome) : ""} · ${SHG.clock(inc.resolved_at, false)}`))));
  }

  function renderTargets() {
    const site = state.site;
    if (!site) return;
    SHG.setSiteOffset(site.utc_offset_s, site.demo_clock);
    const tg = site.targets;
    ui.targets.textContent = t("target.note", {
      care1: SHG.duration(tg.care[1] ?? tg.care["1"]), tech3: SHG.duration(tg.technical[3] ?? tg.technical["3"]),
      basis: site.name ? `${site.name} · ${tg.basis}` : tg.basis,
    });
    showSiteClock(); // filled at once: an empty clock filled a second later moved the page
    ui.siteClock.hidden = false;
  }
  function showSiteClock() {
    if (state.site) ui.siteClock.textContent = `${SHG.clock(SHG.now(), false)} · ${t("tz.label", { tz: SHG.tzName() })}`;
  }
  setInterval(showSiteClock, 1000);

  function tick() {
    for (const row of [...ui.rows.children, ...ui.techRows.children]) {
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

  /* Reads overlap (live events, the reconcile clock, an action's own re-read): an answer is
   * shown only if no read started after it has been shown already, so a read that left
   * before an action and came back after it cannot bring back the state before the action. */
  let readsStarted = 0;
  let readShown = 0;
  async function refresh() {
    const read = ++readsStarted;
    try {
      const senior = SHG.role() === "supervisor" || SHG.role() === "admin";
      const [open, resolved] = await Promise.all([
        api("/console/incidents"), senior ? api("/console/incidents?view=resolved") : [],
      ]);
      if (read < readShown) return; // a newer answer is on screen already
      readShown = read;
      state.incidents = open;
      state.resolved = resolved;
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
  /* The site's clock and targets and the staff's names: once at sign-in. */
  async function loadSiteAndPeople() {
    try {
      const [site, people] = await Promise.all([api("/console/site"), api("/console/people")]);
      state.site = site;
      state.people = new Map(people.map((p) => [p.user_id, p]));
      renderTargets();
      renderList();
      if (state.selected) renderDetail();
    } catch (err) {
      if (!handleAuthLoss(err)) showError(err);
    }
  }
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
    ui.feed.dataset.i18n = on ? "feed.on" : "feed.retry";
    ui.feed.textContent = t(ui.feed.dataset.i18n);
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
          signOut(t("session.expired")); return;
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
    stopBoard();
    clearError();
    state.selectedId = id;
    state.selected = null;
    state.card = null;
    for (const row of [...ui.rows.children, ...ui.techRows.children]) {
      row.classList.toggle("selected", row.dataset.incidentId === String(id));
    }
    await loadSelected(true);
    // On a tablet or phone the detail (with its buttons) sits under the lists: bring it up.
    if (window.matchMedia("(max-width: 900px)").matches) ui.detail.scrollIntoView({ block: "start" });
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

  function reasonForm(id, placeholder, buttonId, buttonText, cls, onReason) {
    const reason = el("input", { id, placeholder, maxlength: "2000", "aria-label": placeholder });
    return el("form", { class: "rowform", onsubmit: (e) => {
      e.preventDefault();
      const text = reason.value.trim();
      if (!text) { showError(t("act.reason_missing")); return; }
      onReason(text);
    } }, reason, el("button", { id: buttonId, class: cls, type: "submit" }, buttonText));
  }

  /* The buttons the workflow allows this role in this state (gateway.workflow.transitions):
   * staff acknowledge, dispatch, record arrival and resolve (a false alarm with its reason);
   * supervisors also cancel one raised in error (with a reason) and close after review. */
  function actionsFor(inc) {
    const box = el("div", { class: "actions", id: "actions", "data-for": `${inc.id}:${inc.state}` });
    const s = inc.state;
    const senior = SHG.role() === "supervisor" || SHG.role() === "admin";
    if (s === "raised") {
      box.append(el("button", { id: "act-acknowledge", class: "primary", type: "button",
        onclick: () => act("acknowledge", undefined) }, t("act.acknowledge")));
    }
    if (s === "acknowledged") {
      const responder = el("input", { id: "responder", placeholder: t("act.responder"),
        maxlength: "64", "aria-label": t("act.responder"), list: "staff-names" });
      const names = el("datalist", { id: "staff-names" }, ...[...state.people.values()]
        .filter((p) => p.display_name && p.role !== "admin")
        .map((p) => el("option", { value: p.display_name })));
      box.append(el("form", { class: "rowform", onsubmit: (e) => {
        e.preventDefault();
        const who = responder.value.trim();
        if (!who) { showError(t("act.responder_missing")); return; }
        act("dispatch", { responder: who });
      } }, responder, names, el("button", { id: "act-dispatch", type: "submit" }, t("act.dispatch"))));
    }
    if (s === "dispatched") {
      box.append(el("button", { id: "act-on-scene", type: "button",
        onclick: () => act("on-scene", undefined) }, t("act.on_scene")));
    }
    if (s === "acknowledged" || s === "dispatched" || s === "on_scene") {
      const outcome = el("select", { id: "outcome", "aria-label": t("act.outcome") },
        el("option", { value: "", text: t("act.outcome") }),
        ...SHG.OUTCOMES.filter((o) => o !== "condition_cleared" && o !== "false_alarm")
          .map((o) => el("option", { value: o, text: SHG.outcomeLabel(o) })));
      const notes = el("textarea", { id: "notes", maxlength: "2000", placeholder: t("act.notes"),
        "aria-label": t("act.notes") });
      box.append(el("form", { class: "rowform", onsubmit: (e) => {
        e.preventDefault();
        if (!outcome.value) { showError(t("act.outcome_missing")); return; }
        act("resolve", { outcome: outcome.value, notes: notes.value.trim() || null });
      } }, outcome, notes, el("button", { id: "act-resolve", class: "danger", type: "submit" }, t("act.resolve"))));
      box.append(reasonForm("false-reason", t("act.false_reason"), "act-false-alarm",
        t("act.false_alarm"), "", (text) => act("resolve", { outcome: "false_alarm", notes: text })));
    }
    if (senior && (s === "raised" || s === "acknowledged")) {
      box.append(reasonForm("cancel-reason", t("act.cancel_reason"), "act-cancel", t("act.cancel"),
        "", (text) => act("cancel", { reason: text })));
    }
    if (senior && s === "resolved") {
      box.append(el("button", { id: "act-close", type: "button",
        onclick: () => act("close", undefined) }, t("act.close")));
    }
    if (!box.children.length) box.append(el("p", { class: "empty", text: t("act.none") }));
    return box;
  }

  /* "护工 张丽": a user by role and display name (the role alone without a name). */
  function personLabel(userId, role, name) {
    if (!userId) return role ? (name ? `${SHG.roleLabel(role)} ${name}` : SHG.roleLabel(role)) : "";
    if (userId === "system") return t("actor.system");
    if (userId === "resident") return t("actor.resident");
    const p = state.people.get(userId);
    const r = (p && p.role) || role;
    const roleText = r ? SHG.roleLabel(r) : t("actor.unknown");
    return p && p.display_name ? `${roleText} ${p.display_name}` : roleText;
  }

  function cardView(card) {
    const flags = el("p", {},
      card.high_risk ? el("span", { class: "flag", text: t("card.high_risk") }) : null,
      card.lives_alone ? el("span", { class: "flag", text: t("card.alone") }) : null);
    const v = card.last_vitals;
    const vitals = v
      ? t("vitals.line", { hr: v.heart_rate ?? "—", rr: v.breathing_rate ?? "—",
        presence: v.presence === true ? t("vitals.in_bed") : v.presence === false ? t("vitals.out") : "",
        time: SHG.clock(v.time) })
      : t("vitals.none");
    // The card was read when the incident was selected: keep its own line current.
    const sel = state.selected;
    const recent = (card.recent_incidents || []).map((r) => (sel && r.id === sel.id
      ? { ...r, state: sel.state, outcome: sel.outcome } : r));
    return el("div", { id: "resident-card" },
      el("h3", { text: t("card.resident") }),
      flags,
      facts([
        [t("card.name"), card.display_name], [t("card.code"), card.elder_code],
        [t("card.bed"), card.bed_code], [t("card.room"), card.room], [t("card.address"), card.address],
        [t("card.level"), card.care_level], [t("card.vitals"), vitals],
      ]),
      el("h3", { text: t("card.contacts") }),
      card.contacts && card.contacts.length
        ? el("ul", { class: "history" }, ...card.contacts.map((c) => el("li", {},
          `${c.display_name}${c.relation ? ` (${c.relation})` : ""} · `,
          c.phone ? el("a", { href: `tel:${c.phone}` }, c.phone) : (c.masked_phone || c.email || "—"))))
        : el("p", { class: "empty", text: t("card.none") }),
      el("h3", { text: t("card.recent") }),
      el("ul", { class: "history", id: "recent-incidents" }, ...recent.map((r) => el("li", { "data-incident-id": r.id },
        `${SHG.clock(r.raised_at, false)} · ${SHG.typeLabel(r.type)} · ${SHG.stateLabel(r.state)}` +
        (r.outcome ? ` · ${SHG.outcomeLabel(r.outcome)}` : "")))));
  }

  function renderDetail() {
    const inc = state.selected;
    if (!inc) return;
    // Live events re-render the panel; keep the action forms of an unchanged incident so a
    // responder id or notes being typed are not wiped by someone else's update.
    const prev = document.getElementById("actions");
    const actions = prev && prev.dataset.for === `${inc.id}:${inc.state}` && prev.dataset.lang === SHG.lang()
      ? prev : actionsFor(inc);
    actions.dataset.lang = SHG.lang();
    const row = state.incidents.find((i) => i.id === inc.id) || state.resolved.find((i) => i.id === inc.id);
    const sentence = SHG.reasonText(inc);
    // (replaceChildren would print a null as the text "null": the hub-offline card did.)
    SHG.keepFocus(ui.detail, () => ui.detail.replaceChildren(...[
      el("h2", { id: "detail-title", class: inc.technical ? "tech" : "care" }, `${SHG.typeLabel(inc.type)} #${inc.id}`),
      el("p", { class: "state", id: "detail-state", "data-state": inc.state, text: SHG.stateLabel(inc.state) }),
      row ? el("p", { class: "where-line", id: "detail-where" }, `${residentLabel(row)} · ${residentWhere(row)}`) : null,
      facts([
        [t("f.raised"), SHG.clock(inc.raised_at)],
        [t("f.reason"), sentence || inc.reason],
        [t("f.triggers"), inc.trigger_count > 1 ? inc.trigger_count : null],
        [t("f.acked_by"), inc.acknowledged_by ? personLabel(inc.acknowledged_by) : null],
        [t("f.time_to_ack"), inc.time_to_acknowledge_s != null ? SHG.duration(inc.time_to_acknowledge_s) : null],
        [t("f.target"), row ? SHG.duration(targetOf(row)) : null],
        [t("f.responder"), inc.responder],
        [t("f.outcome"), inc.outcome && SHG.outcomeLabel(inc.outcome)],
      ]),
      sentence ? el("details", { class: "tech-reason" }, el("summary", { text: t("f.technical") }),
        el("p", { text: inc.reason })) : null,
      actions,
      // The call-centre panel (console-calls.js): click-to-call, call outcomes, notes.
      typeof SHG_CALLS !== "undefined" ? SHG_CALLS.panel(inc, () => loadSelected(false)) : null,
      state.card ? cardView(state.card) : null,
      el("h3", { text: t("timeline") }),
      el("ol", { class: "timeline", id: "timeline" }, ...timelineItems(inc)),
    ].filter(Boolean)));
  }

  // -- the timeline: state changes merged with escalation steps, pages and messages ---------

  /* A code of an escalation table from the catalogue ("esc.<table>.<code>"; the code if unknown). */
  const label = (table, code) => {
    if (code == null) return "";
    const key = `esc.${table}.${code}`;
    const text = t(key);
    return text === key ? code : text;
  };
  const tierLabel = (name) => label("tier", name);
  function channelLabel(channel) {
    if (!channel) return "";
    const [kind, name] = channel.split(":");
    return label("channel", kind) + (name ? ` (${name})` : "");
  }
  /* Who, by role or relation only (the API never sends names, logins or numbers). */
  function whoLabel(r) {
    if (!r) return "";
    if (r.kind === "all_staff") return t("esc.all_staff");
    if (r.kind === "staff") return (r.label ? `${r.label} · ` : "") + (label("role", r.role) || t("actor.unknown"));
    const kind = r.kind === "community_worker" ? t("esc.community_worker") : t("role.family");
    return kind + (r.relation ? ` (${r.relation})` : "");
  }

  function escalationText(e) {
    switch (e.kind) {
      case "tier":
        return t("esc.tier", { tier: tierLabel(e.tier_name), n: e.reached });
      case "tier_skipped":
        return t("esc.tier_skipped", { tier: tierLabel(e.tier_name) });
      case "reminder":
        return t("esc.reminder", { n: e.sequence, tier: tierLabel(e.tier_name) });
      case "unreachable":
        return t("esc.unreachable");
      case "stopped":
        return t("esc.stopped", { why: label("stop", e.reason) });
      case "page":
        return `${label("page", e.page_kind)} → ${whoLabel(e.recipient)} · ${channelLabel(e.channel)}`;
      case "notification": {
        const n = (e.attempts || []).length;
        const when = e.result_at ? ` ${SHG.clock(e.result_at, false)}` : "";
        const why = e.status === "failed" && e.detail ? ` — ${e.detail}` : "";
        return t("esc.message", { who: whoLabel(e.recipient), channel: channelLabel(e.channel) }) +
          ` · ${label("status", e.status)}${when}` + (n > 1 ? ` ${t("esc.attempts", { n })}` : "") + why;
      }
      case "page_ack":
        return t("esc.page_ack", { who: whoLabel(e.recipient), via: label("ack_via", e.channel) }) +
          (e.status === "already_acknowledged" ? ` · ${t("esc.someone_first")}` : "");
      default:
        return e.kind;
    }
  }

  /* 探访关爱 on the timeline: who was sent to knock and by when, then what they found (the
   * result's words as the API recorded them), by name. Null for any other event. */
  function doorKnockText(e) {
    const d = e.data || {};
    if (e.kind === "door_knock") {
      const reason = t(`visits.reason.${d.reason}`);
      return t("tl.door_knock", {
        worker: d.worker_id ? personLabel(d.worker_id, "community_worker") : t("role.community_worker"),
        due: d.due_at ? SHG.clock(d.due_at, false) : "—",
        reason: reason === `visits.reason.${d.reason}` ? (d.reason || "") : reason,
      });
    }
    if (e.kind === "door_knock_result") {
      const result = t(`worker.result.${d.result}`);
      return t("tl.door_knock_result", {
        result: result === `worker.result.${d.result}` ? (d.label || d.result || "") : result,
        who: personLabel(e.actor, "community_worker"),
      }) + (d.escalated ? t("tl.door_knock_escalated") : "");
    }
    return null;
  }

  /* Both lists are in order; merge them by time, keeping each one's own order. */
  /* The incident's events and escalation steps in time order (data-time: epoch ms): both
   * lists merged and sorted by time, stable (for equal times, events before steps, each
   * list in the API's order) — the events list itself is not always in time order (a page
   * logged after the escalation step that sent it). */
  function timelineItems(inc) {
    const ms = (x) => { const v = Date.parse(x.time); return Number.isNaN(v) ? 0 : v; };
    const all = [
      ...(inc.timeline || []).map((e) => ({ e, step: false, at: ms(e) })),
      ...(inc.escalation || []).map((e) => ({ e, step: true, at: ms(e) })),
    ].sort((a, b) => a.at - b.at); // Array.prototype.sort is stable
    return all.map(({ e, step, at }) => {
      if (!step) {
        const what = t(`tl.${e.kind}`) === `tl.${e.kind}` ? e.kind : t(`tl.${e.kind}`);
        const own = doorKnockText(e) ||
          (typeof SHG_CALLS !== "undefined" ? SHG_CALLS.eventText(e, personLabel) : null);
        return el("li", { "data-kind": e.kind, "data-time": String(at) },
          `${SHG.clock(e.time, false)} · ${own || `${what} · ${personLabel(e.actor)}`}`);
      }
      return el("li", { class: `esc esc-${e.kind}`, "data-kind": `escalation.${e.kind}`,
        "data-status": e.status || null, "data-time": String(at) },
      `${SHG.clock(e.time, false)} · ${escalationText(e)}`);
    });
  }

  // -- the shift handover summary (GET /console/handover) -----------------------------------

  async function showHandover() {
    clearError();
    state.selectedId = null;
    state.selected = null;
    state.card = null;
    try {
      const h = await api("/console/handover");
      const item = (i) => el("li", { "data-incident-id": i.id }, [
        SHG.typeLabel(i.type),
        i.technical && i.device_kind ? SHG.kindLabel(i.device_kind) : i.resident_name,
        i.bed_code && t("bed", { code: i.bed_code }), i.location_label, SHG.stateLabel(i.state),
        i.acknowledged_by_role && personLabel(null, i.acknowledged_by_role, i.acknowledged_by_name),
        SHG.clock(i.raised_at, false),
      ].filter(Boolean).join(" · "));
      const list = (id, items, render) => (items.length
        ? el("ul", { class: "history", id }, ...items.map(render))
        : el("p", { class: "empty", id, text: t("card.none") }));
      const c = h.counts;
      ui.detail.replaceChildren(
        el("h2", { id: "handover" }, t("handover.title")),
        el("p", { class: "where-line" }, t("handover.window",
          { since: SHG.clock(h.since, false), until: SHG.clock(h.until) })),
        el("p", {}, t("handover.counts", { raised: c.raised, resolved: c.resolved, fa: c.false_alarms, cancelled: c.cancelled })),
        el("h3", { text: t("handover.open") }),
        list("handover-open", h.open_care, item),
        el("h3", { text: t("handover.flagged") }),
        list("handover-flagged", h.flagged_residents, (f) => el("li", {},
          `${f.resident_name || f.resident_id} · ${[f.bed_code && t("bed", { code: f.bed_code }), f.location_label].filter(Boolean).join(" · ")}` +
          ` · ${[...new Set(f.types)].map(SHG.typeLabel).join("、")}` +
          (f.still_open ? ` · ${t("handover.still_open", { n: f.still_open })}` : ""))),
        el("h3", { text: t("handover.devices") }),
        list("handover-devices", h.devices_to_fix, item));
      if (window.matchMedia("(max-width: 900px)").matches) ui.detail.scrollIntoView({ block: "start" });
    } catch (err) {
      if (!handleAuthLoss(err)) showError(err);
    }
  }
  ui.handover.addEventListener("click", () => { stopBoard(); showHandover(); });

  // -- the live board (GET /console/board), re-read every few seconds while shown ----------

  let boardTimer = null;
  function stopBoard() { clearInterval(boardTimer); boardTimer = null; }
  async function renderBoard() {
    try {
      const b = await api("/console/board");
      if (boardTimer === null) return; // closed meanwhile
      ui.detail.replaceChildren(
        el("h2", { id: "live-board" }, t("board.title")),
        el("div", { class: "tiles" }, ...b.beds.map((bed) => el("div", {
          class: `tile tile-${bed.state}`, "data-bed": bed.bed_code, "data-state": bed.state,
          onclick: bed.incident_id ? () => { stopBoard(); select(bed.incident_id); } : null,
        },
        el("strong", { text: bed.resident_name || t("board.empty_bed") }),
        el("span", { class: "sub", text: [t("bed", { code: bed.bed_code }), bed.location_label].join(" · ") }),
        el("span", { class: "tile-state", text: bed.state === "incident"
          ? `${SHG.typeLabel(bed.incident_type)} · ${SHG.stateLabel(bed.incident_state)}`
          : t(`board.${bed.state}`) })))),
        el("p", { class: "hint", text: t("updated", { time: SHG.clock(SHG.now()) }) }));
    } catch (err) {
      stopBoard();
      if (!handleAuthLoss(err)) showError(err);
    }
  }
  function showBoardPanel() {
    clearError();
    state.selectedId = null;
    state.selected = null;
    stopBoard();
    boardTimer = setInterval(renderBoard, 4000);
    renderBoard();
    if (window.matchMedia("(max-width: 900px)").matches) ui.detail.scrollIntoView({ block: "start" });
  }
  ui.boardButton.addEventListener("click", showBoardPanel);

  // -- sign-in -----------------------------------------------------------------------------

  function showBoard() {
    ui.login.hidden = true;
    ui.board.hidden = false;
    ui.signOut.hidden = false;
    ui.handover.hidden = false;
    ui.boardButton.hidden = false;
    setLive(false);
    refresh();
    startReconcile();
    loadReconcileInterval();
    loadSiteAndPeople();
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
    ui.handover.hidden = true;
    ui.boardButton.hidden = true;
    stopBoard();
    ui.alarm.hidden = true;
    ui.mute.hidden = true;
    ui.feed.className = "feed feed-off";
    ui.feed.dataset.i18n = "feed.off";
    ui.feed.textContent = t("feed.off");
    ui.siteClock.hidden = true;
    if (message) showError(message);
  }
  ui.signOut.addEventListener("click", () => signOut());
  ui.lang.addEventListener("click", () => SHG.toggleLang());
  document.addEventListener("shg:lang", () => {
    renderList();
    updateAlarm();
    renderTargets();
    if (state.selected) renderDetail();
  });

  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    unlockAudio(); // the click is the user gesture that lets the alarm sound
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (!STAFF_ROLES.has(tok.role)) {
        SHG.signOut();
        showError(t("login.staff_only"));
        return;
      }
      showBoard();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401 ? t("login.bad") : err);
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
      el("strong", { text: SHG.t("test.banner", { n: live.length }) }),
      el("ul", {}, ...live.map((t) => el("li", { "data-test-id": t.test_id },
        SHG.t("test.line", { bed: t.bed_code || "—", room: t.location || "—", device: t.device_id }),
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
