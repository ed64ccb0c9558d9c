/* The family view: is my relative safe, is someone handling it, what happened lately.
 * Family members have no live stream: the page re-reads every 15 s while it is visible.
 * Every word comes from the catalogue (i18n.js), every time is in the site's zone. */
"use strict";

(() => {
  const { api, el, t } = SHG;
  const POLL_MS = 15000;
  const $ = (id) => document.getElementById(id);
  const ui = { login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    list: $("relatives"), error: $("error"), updated: $("updated"), signOut: $("sign-out"),
    lang: $("lang") };
  let timer = null;
  let last = []; // the relatives shown, for a re-render in another language

  function showError(text) { ui.error.textContent = text; ui.error.hidden = false; }
  function clearError() { ui.error.hidden = true; ui.error.textContent = ""; }

  /* "护工 张丽": role and display name of whoever took it (never a login name). */
  function person(name, role) {
    const r = role ? SHG.roleLabel(role) : t("family.staff");
    return name ? `${r} ${name}` : r;
  }

  function handler(inc) {
    const who = person(inc.handled_by, inc.handled_by_role);
    if (inc.responder) return `${inc.handled_by_role ? who : t("family.staff")} → ${inc.responder}`;
    if (inc.handled_by_role) return who;
    return t("family.status.alerting", { since: SHG.hm(inc.raised_at) });
  }

  /* The plain status line (GET /family/residents/{id}/status). */
  function statusLine(s) {
    if (!s) return null;
    let text;
    if (s.kind === "alerting") text = t("family.status.alerting", { since: SHG.hm(s.since) });
    else if (s.kind === "handling") text = t("family.status.handling", { who: person(s.handler_name, s.handler_role), time: SHG.hm(s.since) });
    else if (s.kind === "on_scene") text = t("family.status.on_scene", { time: SHG.hm(s.since) });
    else if (s.kind === "up") text = t("family.status.up", { time: SHG.hm(s.rise_at) });
    else if (s.kind === "ok") text = t("family.status.ok");
    else text = t("family.status.unknown");
    return el("p", { class: `status-line ${s.kind}`, id: `status-${s.resident_id}`, "data-kind": s.kind }, text);
  }

  function relativeCard({ r, s }) {
    if (s) SHG.setSiteOffset(s.utc_offset_s);
    const card = el("article", { class: "card", "data-resident-id": r.resident_id },
      el("h2", { text: r.display_name || r.resident_id }), statusLine(s));
    if (r.safe === true) {
      card.append(el("p", { class: "verdict safe", id: `verdict-${r.resident_id}` }, t("family.safe")));
    } else if (r.safe === false) {
      const inc = r.open_incident;
      card.append(
        el("p", { class: "verdict alert", id: `verdict-${r.resident_id}` }, t("family.open", { type: SHG.typeLabel(inc.type) })),
        el("div", { class: "open" },
          el("p", { text: t("family.state", { state: SHG.stateLabel(inc.state) }) }),
          el("p", { text: t("family.raised", { time: SHG.clock(inc.raised_at) }) }),
          el("p", { text: t("family.who", { who: handler(inc) }) }),
          inc.on_scene_at ? el("p", { text: t("family.on_scene", { time: SHG.clock(inc.on_scene_at) }) }) : null));
    } else {
      card.append(el("p", { class: "verdict unknown" }, t("family.not_shared")));
    }
    if (s && s.care_phone) {
      card.append(el("p", { class: "phone", id: `phone-${r.resident_id}` }, t("family.phone"),
        el("a", { href: `tel:${s.care_phone.replace(/[^0-9+]/g, "")}` }, s.care_phone),
        s.site_name ? el("span", { class: "tz", text: ` · ${s.site_name}` }) : null));
    }
    if (r.vitals_shared) {
      const v = r.vitals;
      card.append(el("h3", { text: t("family.vitals") }), el("p", {}, v
        ? t("family.vitals_line", { hr: v.heart_rate ?? "—", rr: v.breathing_rate ?? "—", time: SHG.clock(v.time) })
        : t("family.vitals_none")));
    }
    if (Array.isArray(r.recent_incidents)) {
      card.append(el("h3", { text: t("family.history") }));
      card.append(r.recent_incidents.length
        ? el("ul", {}, ...r.recent_incidents.map((i) => el("li", {},
          `${SHG.clock(i.raised_at, false)} · ${SHG.typeLabel(i.type)} · ${SHG.stateLabel(i.state)}` +
          (i.outcome ? ` · ${SHG.outcomeLabel(i.outcome)}` : ""))))
        : el("p", { class: "muted", text: t("family.nothing") }));
    }
    card.append(el("p", { class: "tz", text: t("tz.label", { tz: SHG.tzName() }) }));
    return card;
  }

  function render() {
    ui.list.replaceChildren(...(last.length ? last.map(relativeCard)
      : [el("p", { class: "muted", text: t("family.none_linked") })]));
  }

  async function load() {
    try {
      const mine = await api("/family/residents");
      last = await Promise.all(mine.map(async (m) => {
        const id = encodeURIComponent(m.resident_id);
        const [r, s] = await Promise.all([api(`/family/residents/${id}`),
          api(`/family/residents/${id}/status`).catch(() => null)]);
        return { r, s };
      }));
      render();
      ui.updated.textContent = t("updated", { time: SHG.clock(SHG.now()) });
      ui.updated.hidden = false;
      clearError();
    } catch (err) {
      if (err instanceof SHG.ApiError && err.status === 401) { signOut(t("family.again")); return; }
      showError(t("family.cannot", { detail: err.message || err }));
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
    last = [];
    ui.list.replaceChildren();
    ui.list.hidden = true;
    ui.updated.hidden = true;
    ui.login.hidden = false;
    ui.signOut.hidden = true;
    if (message) showError(message);
  }
  ui.signOut.addEventListener("click", () => signOut());
  ui.lang.addEventListener("click", () => SHG.toggleLang());
  document.addEventListener("shg:lang", () => { if (last.length) render(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && SHG.token()) load(); });

  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (tok.role !== "family") {
        SHG.signOut();
        showError(t("login.family_only"));
        return;
      }
      start();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401
        ? t("login.bad") : t("login.failed", { detail: err.message || err }));
    }
  });

  if (SHG.token() && SHG.role() === "family") start();
})();
