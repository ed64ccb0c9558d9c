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

  /* -- ratings (issue 13 §7): a resolved or closed incident may be rated, 1-5 stars -- */
  const RATEABLE = new Set(["resolved", "closed"]);
  const stars = (n) => "★".repeat(n) + "☆".repeat(5 - n);
  let rating = null; // the open rating form: { id, stars, comment }
  let notice = null; // a confirmation line: { rid, text }

  function historyItem(i, ratings) {
    const li = el("li", { "data-incident-id": i.id },
      el("span", { text: `${SHG.clock(i.raised_at, false)} · ${SHG.typeLabel(i.type)} · ${SHG.stateLabel(i.state)}` }),
      i.outcome ? el("span", { class: "outcome", text: ` · ${t("family.outcome", { outcome: SHG.outcomeLabel(i.outcome) })}` }) : null);
    if (!RATEABLE.has(i.state)) return li;
    const mine = (ratings || []).find((x) => x.incident_id === i.id);
    if (rating && rating.id === i.id) { li.append(ratingForm(i.id)); return li; }
    const row = el("div", { class: "rating" });
    if (mine) {
      row.append(el("span", { class: "stars", id: `rated-${i.id}`, "aria-label": t("family.rate.stars", { n: mine.stars }) },
        t("family.rate.done"), stars(mine.stars)));
      if (mine.comment) row.append(el("span", { class: "muted", text: ` “${mine.comment}”` }));
      if (Date.parse(mine.editable_until) > SHG.now()) {
        row.append(el("button", { type: "button", class: "link", id: `rate-${i.id}`,
          onclick: () => openRating(i.id, mine) }, t("family.rate.change")));
      }
    } else {
      row.append(el("button", { type: "button", class: "secondary", id: `rate-${i.id}`,
        onclick: () => openRating(i.id, null) }, t("family.rate")));
    }
    li.append(row);
    return li;
  }

  function openRating(id, mine) {
    rating = { id, stars: mine ? mine.stars : 0, comment: mine && mine.comment ? mine.comment : "" };
    render();
    const first = document.querySelector(`#rate-form-${id} button[data-stars]`);
    if (first) first.focus();
  }

  function ratingForm(id) {
    const picks = el("div", { class: "star-picks", role: "group", "aria-label": t("family.rate.title") },
      ...[1, 2, 3, 4, 5].map((n) => el("button", {
        type: "button", class: n <= rating.stars ? "star on" : "star", "data-stars": n,
        "aria-pressed": String(n === rating.stars), "aria-label": t("family.rate.stars", { n }),
        onclick: () => { rating.stars = n; render(); document.querySelector(`#rate-form-${id} button[data-stars="${n}"]`)?.focus(); },
      }, n <= rating.stars ? "★" : "☆")));
    const comment = el("textarea", { id: `rate-comment-${id}`, maxlength: "500", rows: "2",
      oninput: (e) => { rating.comment = e.target.value; } });
    comment.value = rating.comment;
    const form = el("form", { class: "rate-form", id: `rate-form-${id}`, onsubmit: (e) => { e.preventDefault(); sendRating(id); } },
      el("p", { class: "rate-title", text: t("family.rate.title") }), picks,
      el("label", {}, el("span", { text: t("family.rate.comment") }), comment),
      el("div", { class: "actions" },
        el("button", { type: "submit", id: `rate-submit-${id}` }, t("family.rate.submit")),
        el("button", { type: "button", class: "secondary", onclick: () => { rating = null; render(); } }, t("family.rate.cancel"))));
    return form;
  }

  async function sendRating(id) {
    if (!rating || rating.stars < 1) { showError(t("family.rate.pick")); return; }
    try {
      await api(`/family/incidents/${id}/rating`, { method: "PUT",
        body: { stars: rating.stars, comment: rating.comment.trim() || null } });
      const card = last.find((x) => (x.r.recent_incidents || []).some((i) => i.id === id));
      notice = card ? { rid: card.r.resident_id, text: t("family.rate.saved") } : null;
      rating = null;
      clearError();
      await load(true);
    } catch (err) {
      showError(t("family.rate.failed", { detail: err.message || err }));
    }
  }

  /* -- away mode, 随家人外出: dates in the site's zone ---------------------------------- */
  function localDay(ms, offsetS) {
    const d = new Date(ms + offsetS * 1000);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  }
  const pad = (n) => String(n).padStart(2, "0");

  /* While away with the family, that is the status line. */
  function awayLine(away, s) {
    const now = (away || []).find((p) => p.state === "active");
    if (!now) return null;
    const end = localDay(Date.parse(now.ends_at) - 1, s ? s.utc_offset_s : 28800);
    return el("p", { class: "status-line away-now", "data-kind": "away" }, t("family.away.now", { end }));
  }

  function awaySection(rid, away, s) {
    const off = s ? s.utc_offset_s : 28800;
    const box = el("section", { class: "away", id: `away-${rid}` },
      el("h3", { text: t("family.away") }), el("p", { class: "muted hint", text: t("family.away.hint") }));
    for (const p of away || []) {
      const start = localDay(Date.parse(p.starts_at), off);
      const end = localDay(Date.parse(p.ends_at) - 1, off);
      const key = p.state === "active" ? "family.away.active" : "family.away.coming";
      box.append(el("div", { class: `away-period ${p.state}`, "data-period-id": p.id },
        el("p", { class: "away-line", text: t(key, { start, end }) + (p.note ? ` · ${p.note}` : "") }),
        p.suppressed ? el("p", { class: "muted", text: t("family.away.suppressed", { n: p.suppressed }) }) : null,
        el("button", { type: "button", class: "secondary", id: `away-end-${p.id}`,
          onclick: () => endAway(rid, p.id) }, t(p.state === "active" ? "family.away.end_now" : "family.away.cancel"))));
    }
    const today = localDay(SHG.now(), off);
    const input = (name, type, value) => {
      const i = el("input", { id: `away-${name}-${rid}`, name, type, required: type === "date" ? true : null,
        maxlength: type === "text" ? "200" : null });
      i.value = value;
      return i;
    };
    box.append(el("form", { class: "away-form", id: `away-form-${rid}`,
      onsubmit: (e) => { e.preventDefault(); setAway(rid, e.target); } },
      el("label", {}, el("span", { text: t("family.away.start") }), input("start", "date", today)),
      el("label", {}, el("span", { text: t("family.away.end") }), input("end", "date", today)),
      el("label", {}, el("span", { text: t("family.away.note") }), input("note", "text", "")),
      el("button", { type: "submit", id: `away-submit-${rid}` }, t("family.away.submit"))));
    return box;
  }

  async function setAway(rid, form) {
    const v = (n) => form.querySelector(`[name="${n}"]`).value;
    try {
      await api(`/family/residents/${encodeURIComponent(rid)}/away`, { method: "POST",
        body: { start_date: v("start"), end_date: v("end"), note: v("note").trim() || null } });
      notice = { rid, text: t("family.away.saved") };
      clearError();
      await load(true);
    } catch (err) {
      showError(t("family.away.failed", { detail: err.message || err }));
    }
  }

  async function endAway(rid, periodId) {
    try {
      await api(`/family/residents/${encodeURIComponent(rid)}/away/${periodId}/end`, { method: "POST" });
      notice = { rid, text: t("family.away.ended") };
      clearError();
      await load(true);
    } catch (err) {
      showError(t("family.away.failed", { detail: err.message || err }));
    }
  }

  /* A form being filled in is not re-drawn under the user's fingers by the 15 s refresh. */
  function busy() {
    const a = document.activeElement;
    return rating !== null || Boolean(a && a.closest && a.closest(".away-form"));
  }

  function relativeCard({ r, s, visits, services, ratings, away }) {
    if (s) SHG.setSiteOffset(s.utc_offset_s, s.demo_clock);
    const card = el("article", { class: "card", "data-resident-id": r.resident_id },
      el("h2", { text: r.display_name || r.resident_id }),
      awayLine(away, s) || statusLine(s),
      notice && notice.rid === r.resident_id ? el("p", { class: "notice", role: "status", text: notice.text }) : null);
    if (r.safe === true) {
      card.append(el("p", { class: "verdict safe", id: `verdict-${r.resident_id}` }, t("family.safe")));
    } else if (r.safe === false) {
      const inc = r.open_incident;
      card.append(
        el("p", { class: "verdict alert", id: `verdict-${r.resident_id}` }, t(inc.state === "raised" ? "family.open_waiting" : "family.open", { type: SHG.typeLabel(inc.type) })),
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
        ? el("ul", { class: "history" }, ...r.recent_incidents.map((i) => historyItem(i, ratings)))
        : el("p", { class: "muted", text: t("family.nothing") }));
    }
    card.append(awaySection(r.resident_id, away, s));
    if (Array.isArray(visits)) {
      card.append(el("h3", { text: t("family.visits") }), visits.length
        ? el("ul", { class: "visits" }, ...visits.slice(0, 5).map((v) => el("li", {},
          `${SHG.clock(v.visited_at, false)} · ${t(`family.visit.${v.kind}`)} · ${t(`family.visit.${v.outcome}`)}` +
          (v.door_knock_result ? ` · ${t(`family.knock.${v.door_knock_result}`)}` : ""))))
        : el("p", { class: "muted", text: t("family.nothing") }));
    }
    if (Array.isArray(services)) {
      card.append(el("h3", { text: t("family.services") }), services.length
        ? el("ul", { class: "services" }, ...services.slice(0, 5).map((x) => el("li", {},
          `${SHG.clock(x.delivered_at, false)} · ${t(`family.service.${x.service}`)}` +
          (x.minutes ? ` · ${t("family.service.minutes", { n: x.minutes })}` : ""))))
        : el("p", { class: "muted", text: t("family.nothing") }));
    }
    card.append(el("p", { class: "tz", text: t("tz.label", { tz: SHG.tzName() }) }));
    return card;
  }

  function render() {
    ui.list.replaceChildren(...(last.length ? last.map(relativeCard)
      : [el("p", { class: "muted", text: t("family.none_linked") })]));
  }

  /* Visits and services change a few times a month (and each read is audited): re-read
   * every 5 minutes, not on every refresh. */
  const SLOW_MS = 300000;
  const slow = new Map();
  async function slowly(rid, what) {
    const key = `${rid}/${what}`;
    const hit = slow.get(key);
    if (hit && SHG.now() - hit.at < SLOW_MS) return hit.data;
    const data = await api(`/family/residents/${encodeURIComponent(rid)}/${what}`).catch(() => null);
    if (data !== null) slow.set(key, { at: SHG.now(), data });
    return data;
  }

  async function load(force = false) {
    try {
      const mine = await api("/family/residents");
      last = await Promise.all(mine.map(async (m) => {
        const id = encodeURIComponent(m.resident_id);
        const none = () => null;
        const [r, s, visits, services, ratings, away] = await Promise.all([
          api(`/family/residents/${id}`),
          api(`/family/residents/${id}/status`).catch(none),
          slowly(m.resident_id, "visits"),
          slowly(m.resident_id, "services"),
          api(`/family/residents/${id}/ratings`).catch(none),
          api(`/family/residents/${id}/away`).catch(none)]);
        return { r, s, visits, services, ratings, away };
      }));
      if (force || !busy()) render();
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
    rating = null;
    notice = null;
    slow.clear();
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
