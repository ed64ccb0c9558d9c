/* The call-centre tools of the duty console (issue 11 §5): click-to-call from the selected
 * incident (the resident, family contacts, the elder's community worker), the outcome of
 * each call with a note, and free-text incident notes. The console asks for this panel when
 * it renders an incident (SHG_CALLS.panel) and for the timeline text of the call and note
 * events (SHG_CALLS.eventText). Numbers are shown masked (138****1234). With the desk-phone
 * adapter the server hands back a tel:/sip: URI: the panel shows it as the link
 * "在座机上拨打 138****1234", and the staff member's click (a user gesture, which browsers
 * require to hand a URI to the phone application) dials it. The attempt is recorded
 * either way. A script-initiated navigation to tel:/sip: is not used: without a handler it
 * aborts the page's requests (the live stream) in some browsers. */
"use strict";

const SHG_CALLS = (() => {
  const { api, el, t } = SHG;
  const OUTCOMES = ["connected", "no_answer", "busy", "invalid_number", "rejected", "other"];
  // The panel of the selected incident: its node is kept across re-renders (live events)
  // so what is being typed survives; rebuilt when the data or the language changes.
  let cur = { id: null, node: null, lang: null, callees: [], calls: [], dial: null, reload: null };

  const kindLabel = (k) => t(`calls.kind.${k}`);
  const outcomeLabel = (o) => t(`calls.outcome.${o}`);

  function report(err) {
    const box = document.getElementById("error");
    const text = document.getElementById("error-text");
    if (box && text) { text.textContent = err && err.detail ? String(err.detail) : String(err.message || err); box.hidden = false; }
  }

  async function load(id) {
    const [callees, calls] = await Promise.all([
      api(`/incidents/${id}/callees`), api(`/incidents/${id}/calls`)]);
    if (cur.id !== id) return;
    cur.callees = callees;
    cur.calls = calls;
    build();
  }

  async function after(promise) {
    try {
      await promise;
      await load(cur.id);
      if (cur.reload) await cur.reload();
    } catch (err) {
      report(err);
    }
  }

  async function call(c) {
    const id = cur.id;
    try {
      const placed = await api(`/incidents/${id}/calls`, { method: "POST",
        body: { callee_kind: c.kind, callee_ref: c.ref } });
      cur.dial = placed.dial_uri ? { uri: placed.dial_uri, number: c.masked_phone || "" } : null;
    } catch (err) {
      report(err);
    }
    await after(Promise.resolve());
  }

  function calleeItem(c) {
    const name = `${kindLabel(c.kind)} ${c.display_name || ""}${c.relation ? `（${c.relation}）` : ""}`;
    return el("li", { "data-callee": `${c.kind}:${c.ref}` },
      el("span", { class: "who" }, `${name} · ${c.masked_phone || t("calls.no_number")}`),
      el("button", { type: "button", class: "call-button", id: `call-${c.kind}-${c.ref}`,
        disabled: !c.callable, onclick: () => call(c) },
      `${t(`calls.call_${c.kind}`)} ${c.display_name || ""}`.trim()));
  }

  function outcomeForm(callRow) {
    const callee = cur.callees.find((c) => c.kind === callRow.callee_kind && c.ref === callRow.callee_ref);
    const who = `${kindLabel(callRow.callee_kind)} ${callee && callee.display_name ? callee.display_name : ""}`;
    const select = el("select", { id: `call-outcome-${callRow.id}`, "aria-label": t("calls.outcome") },
      el("option", { value: "", text: t("calls.outcome") }),
      ...OUTCOMES.map((o) => el("option", { value: o, text: outcomeLabel(o) })));
    const note = el("input", { id: `call-note-${callRow.id}`, maxlength: "2000",
      placeholder: t("calls.note"), "aria-label": t("calls.note") });
    const status = `${SHG.clock(callRow.placed_at, false)} · ${who} · ${t(`calls.channel.${callRow.channel}`)} · ${t(`calls.status.${callRow.status}`)}`;
    return el("li", { "data-call-id": String(callRow.id) }, el("span", {}, status),
      el("form", { class: "rowform", onsubmit: (e) => {
        e.preventDefault();
        if (!select.value) { report(new Error(t("calls.outcome_missing"))); return; }
        after(api(`/incidents/${cur.id}/calls/${callRow.id}/outcome`, { method: "POST",
          body: { outcome: select.value, note: note.value.trim() || null } }));
      } }, select, note, el("button", { type: "submit", id: `call-record-${callRow.id}` }, t("calls.record"))));
  }

  function build() {
    const node = cur.node;
    if (!node) return;
    cur.lang = SHG.lang();
    const open = cur.calls.filter((c) => !c.outcome || c.outcome_by === "system");
    const noteText = el("textarea", { id: "incident-note", maxlength: "2000",
      placeholder: t("calls.note_text"), "aria-label": t("calls.note_text") });
    const prevNote = node.querySelector("#incident-note");
    if (prevNote) noteText.value = prevNote.value;
    SHG.keepFocus(node, () => node.replaceChildren(...[
      el("h3", { text: t("calls.title") }),
      cur.callees.length
        ? el("ul", { class: "callees", id: "callees" }, ...cur.callees.map(calleeItem))
        : (cur.hasResident ? el("p", { class: "empty", text: t("calls.none") }) : null),
      cur.dial ? el("p", { class: "dial" }, el("a", { id: "call-dial", href: cur.dial.uri },
        t("calls.dial", { number: cur.dial.number }))) : null,
      open.length ? el("h4", { text: t("calls.open") }) : null,
      open.length ? el("ul", { class: "calls-open", id: "calls-open" }, ...open.map(outcomeForm)) : null,
      el("form", { class: "rowform note-form", onsubmit: (e) => {
        e.preventDefault();
        const text = noteText.value.trim();
        if (!text) { report(new Error(t("calls.note_missing"))); return; }
        after(api(`/incidents/${cur.id}/notes`, { method: "POST", body: { text } })
          .then(() => { noteText.value = ""; }));
      } }, noteText, el("button", { type: "submit", id: "add-note" }, t("calls.note_add"))),
    ].filter(Boolean)));
  }

  /* The panel of ``inc`` (the same node while the same incident stays selected). */
  function panel(inc, reload) {
    if (cur.id !== inc.id || !cur.node) {
      cur = { id: inc.id, node: el("section", { class: "calls-panel", id: "calls-panel" }),
        lang: null, callees: [], calls: [], dial: null, reload, hasResident: Boolean(inc.resident_id) };
      if (!document.querySelector('link[href="/static/console-calls.css"]')) {
        document.head.append(el("link", { rel: "stylesheet", href: "/static/console-calls.css" }));
      }
      build();
      load(inc.id).catch(report);
    } else if (cur.lang !== SHG.lang()) {
      build();
    }
    cur.reload = reload;
    return cur.node;
  }

  function whoOf(e, personLabel) {
    const d = e.data || {};
    return d.caller_name ? `${SHG.roleLabel(d.caller_role)} ${d.caller_name}` : personLabel(e.actor);
  }

  /* The timeline sentence of a call or note event; null for any other event. */
  function eventText(e, personLabel) {
    const d = e.data || {};
    const name = `${d.callee_name || ""}${d.relation ? `（${d.relation}）` : ""}`;
    switch (e.kind) {
      case "call_placed": {
        const parts = [t("calls.line.placed", { who: whoOf(e, personLabel), kind: kindLabel(d.callee_kind), name }),
          t(`calls.channel.${d.channel}`), t(`calls.status.${d.status}`)];
        if (d.status === "failed" && d.detail) parts[2] += ` (${d.detail})`;
        if (d.outcome) parts.push(outcomeLabel(d.outcome));
        return parts.join(" · ");
      }
      case "call_outcome":
        return t("calls.line.outcome", { who: whoOf(e, personLabel), kind: kindLabel(d.callee_kind),
          name, outcome: outcomeLabel(d.outcome) }) + (d.note ? ` · ${t("calls.line.note_suffix", { text: d.note })}` : "");
      case "incident_note":
        return t("calls.line.note", { who: whoOf(e, personLabel), text: d.text || "" });
      default:
        return null;
    }
  }

  return { panel, eventText };
})();
