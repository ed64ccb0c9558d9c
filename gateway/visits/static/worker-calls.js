/* Calls from the community worker's page (/worker): the "呼叫" sheet of an elder (from the
 * elder's card or a door-knock task). It lists whom the worker may call (the elder's own
 * phone or home line, the family contacts; numbers masked), places the call through the
 * gateway's telephony adapter (Aliyun rings the worker's own phone first, then the callee;
 * with the desk-phone adapter the answer is a tel: link the worker taps: browsers hand a URI
 * to the phone application on a user gesture), records each call's outcome with a note, and
 * offers "记录为电话探访" (a phone visit, prefilled) after a connected call. Data only from
 * the role-checked API; messages in i18n-worker-calls.js. */
"use strict";

const SHG_WORKER_CALLS = (() => {
  const { api, el, t } = SHG;
  const OUTCOMES = ["connected", "no_answer", "busy", "invalid_number", "rejected"];
  const RECENT = 5;
  let cur = null; // { ctx: { residentId, name, taskId }, hooks, callees, calls, placed, recorded }

  const sheet = () => document.getElementById("call");
  const base = () => `/visits/residents/${encodeURIComponent(cur.ctx.residentId)}`;
  const detail = (err) => (err && err.detail ? String(err.detail) : String((err && err.message) || err));
  const report = (err) => cur && cur.hooks.report(t("wcalls.error", { detail: detail(err) }));

  function whoOf(kind, ref) {
    const c = cur.callees.find((x) => x.kind === kind && x.ref === ref);
    const name = c && c.display_name ? ` ${c.display_name}` : "";
    const relation = c && c.relation ? `（${c.relation}）` : "";
    return `${t(`wcalls.kind.${kind}`)}${name}${relation}`;
  }

  async function load() {
    const [callees, calls] = await Promise.all([api(`${base()}/callees`), api(`${base()}/calls`)]);
    cur.callees = callees;
    cur.calls = calls;
    build();
  }

  async function call(c) {
    cur.recorded = null;
    try {
      const body = { callee_kind: c.kind, callee_ref: c.ref };
      if (cur.ctx.taskId) body.task_id = cur.ctx.taskId;
      const out = await api(`${base()}/calls`, { method: "POST", body });
      cur.placed = { call: out.call, uri: out.dial_uri, number: c.masked_phone || "" };
      cur.hooks.clear();
      await load();
    } catch (err) {
      report(err);
    }
  }

  async function record(callRow, outcome, note) {
    try {
      const out = await api(`/visits/calls/${callRow.id}/outcome`, { method: "POST",
        body: { outcome, note } });
      cur.recorded = { outcome: out.outcome, note: out.outcome_note || "" };
      cur.placed = null;
      cur.hooks.clear();
      await load();
    } catch (err) {
      report(err);
    }
  }

  function calleeItem(c) {
    return el("li", { "data-callee": `${c.kind}:${c.ref}` },
      el("span", { class: "who" }, `${whoOf(c.kind, c.ref)} · ${c.masked_phone || t("wcalls.no_number")}`),
      el("button", { type: "button", class: "wcall-button", id: `wcall-${c.kind}-${c.ref}`,
        disabled: !c.callable, onclick: () => call(c) }, t("wcalls.call")));
  }

  function placedNote() {
    const p = cur.placed;
    if (!p) return null;
    if (p.call.status === "failed") {
      return el("p", { class: "wcall-state late", id: "wcall-state" },
        t("wcalls.failed", { detail: p.call.detail || "—" }));
    }
    if (p.uri) {
      return el("p", { class: "wcall-state", id: "wcall-state" },
        el("a", { id: "wcall-dial", class: "dial", href: p.uri }, t("wcalls.dial", { number: p.number })));
    }
    return el("p", { class: "wcall-state", id: "wcall-state" }, t("wcalls.ringing"));
  }

  function outcomeForm(callRow) {
    const select = el("select", { id: `wcall-outcome-${callRow.id}`, "aria-label": t("wcalls.outcome") },
      el("option", { value: "", text: t("wcalls.outcome") }),
      ...OUTCOMES.map((o) => el("option", { value: o, text: t(`wcalls.outcome.${o}`),
        selected: callRow.outcome === o })));
    const note = el("input", { id: `wcall-note-${callRow.id}`, maxlength: "2000",
      placeholder: t("wcalls.note"), "aria-label": t("wcalls.note") });
    const status = `${SHG.clock(callRow.placed_at, false)} · ${whoOf(callRow.callee_kind, callRow.callee_ref)}` +
      ` · ${t(`wcalls.status.${callRow.status}`)}` + (callRow.task_id ? ` · ${t("wcalls.task")}` : "");
    return el("li", { "data-call-id": String(callRow.id) }, el("span", {}, status),
      el("form", { class: "wcall-form", onsubmit: (e) => {
        e.preventDefault();
        if (!select.value) { report(new Error(t("wcalls.outcome_missing"))); return; }
        record(callRow, select.value, note.value.trim() || null);
      } }, select, note, el("button", { type: "submit", id: `wcall-record-${callRow.id}` }, t("wcalls.record"))));
  }

  function recordedNote() {
    const r = cur.recorded;
    if (!r) return null;
    const visit = r.outcome === "connected"
      ? el("button", { type: "button", id: "wcall-as-visit", onclick: () => {
        const { ctx, hooks } = cur;
        close(false);
        hooks.onVisit(ctx.residentId, ctx.name, r.note);
      } }, t("wcalls.as_visit"))
      : null;
    return el("div", { class: "wcall-recorded", id: "wcall-recorded" },
      el("p", { text: t("wcalls.recorded", { outcome: t(`wcalls.outcome.${r.outcome}`) }) }), visit);
  }

  function build() {
    const node = sheet();
    const pending = cur.calls.filter((c) => !c.outcome || c.outcome_by === "system");
    const done = cur.calls.filter((c) => c.outcome && c.outcome_by !== "system").slice(0, RECENT);
    node.replaceChildren(...[
      el("h2", { id: "wcall-title", text: t("wcalls.title", { name: cur.ctx.name }) }),
      cur.callees.length
        ? el("ul", { class: "wcallees", id: "wcallees" }, ...cur.callees.map(calleeItem))
        : el("p", { class: "muted", text: t("wcalls.none") }),
      placedNote(),
      recordedNote(),
      pending.length ? el("h3", { text: t("wcalls.pending") }) : null,
      pending.length ? el("ul", { class: "wcalls-open", id: "wcalls-open" }, ...pending.map(outcomeForm)) : null,
      done.length ? el("h3", { text: t("wcalls.recent") }) : null,
      done.length ? el("ul", { class: "wcalls-done muted", id: "wcalls-done" }, ...done.map((c) =>
        el("li", { text: `${SHG.clock(c.placed_at, false)} · ${whoOf(c.callee_kind, c.callee_ref)} · ${t(`wcalls.outcome.${c.outcome}`)}` }))) : null,
      el("div", { class: "actions" },
        el("button", { type: "button", class: "secondary", id: "wcall-close", onclick: () => close(true) },
          t("wcalls.close"))),
    ].filter(Boolean));
  }

  /* Open the sheet for an elder: ctx { residentId, name, taskId? }; hooks { report(text),
   * clear(), onVisit(residentId, name, note), onClose() }. */
  function open(ctx, hooks) {
    cur = { ctx, hooks, callees: [], calls: [], placed: null, recorded: null };
    sheet().replaceChildren(el("h2", { id: "wcall-title", text: t("wcalls.title", { name: ctx.name }) }));
    sheet().hidden = false;
    load().catch(report);
  }

  function close(back) {
    const hooks = cur && cur.hooks;
    sheet().hidden = true;
    sheet().replaceChildren();
    cur = null;
    if (back && hooks) hooks.onClose();
  }

  return { open, close, isOpen: () => cur !== null };
})();
