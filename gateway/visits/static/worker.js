/* The community worker's phone page (探访关爱): door-knock tasks and due/overdue visits,
 * then, quieter, her other assigned elders with no visit due (其他负责老人, same actions),
 * and the form that records a visit or a task's result. Proof of presence for a home visit
 * is the elder's or the bed's code: scanned with the camera where the browser has a
 * BarcodeDetector, typed otherwise. Data only from the role-checked API. */
"use strict";

(() => {
  const { api, el, t } = SHG;
  const POLL_MS = 30000;
  const $ = (id) => document.getElementById(id);
  const ui = {
    login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    work: $("work"), tasks: $("tasks"), elders: $("elders"), summary: $("summary"),
    others: $("others"), othersSection: $("others-section"),
    error: $("error"), notice: $("notice"), signOut: $("sign-out"),
    record: $("record"), title: $("record-title"), recordForm: $("record-form"),
    visitFields: $("visit-fields"), resultFields: $("result-fields"), kind: $("kind"),
    outcome: $("outcome"), concerns: $("concerns"), proof: $("proof"), code: $("proof-code"),
    scan: $("scan"), scanHint: $("scan-hint"), camera: $("camera"), notes: $("notes"),
    cancel: $("cancel"), lang: $("lang"),
  };
  const ROLES = ["community_worker", "duty_staff", "supervisor", "admin"];
  let timer = null;
  let current = null; // { type: "visit", residentId } | { type: "task", taskId }
  let proofMethod = "typed";
  let stream = null;

  const showError = (t) => { ui.error.textContent = t; ui.error.hidden = false; };
  const clearError = () => { ui.error.hidden = true; ui.error.textContent = ""; };
  const tell = (t) => { ui.notice.textContent = t; ui.notice.hidden = false; };
  // A calendar day as the API sends it (YYYY-MM-DD, the site's day): never through Date,
  // which would shift it by the browser's zone.
  const day = (iso) => String(iso).slice(0, 10);
  /* The static labels in this page's language (placeholders too), then the lists again. */
  function translate() {
    SHG.translatePage();
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
  }

  function taskCard(task) {
    return el("article", { class: `card task${task.overdue ? " overdue" : ""}`, "data-task-id": String(task.id) },
      el("h3", { text: `${task.display_name} · ${task.elder_code}` }),
      el("p", {}, el("span", { class: "badge" }, task.reason_label),
        task.overdue ? el("span", { class: "badge late" }, t("worker.task_late")) : null),
      el("p", { class: "muted", text: t("worker.due_by", { time: SHG.clock(task.due_at, true, task.utc_offset_s, task.demo_clock) }) +
        (task.incident_id ? ` · ${t("worker.incident", { id: task.incident_id })}` : "") }),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "record-task", onclick: () => openTask(task) }, t("worker.record_result")),
        callButton({ residentId: task.resident_id, name: task.display_name, taskId: task.id })));
  }

  function elderCard(e, quiet = false) {
    const late = e.due.some((d) => d.overdue);
    return el("article", { class: `card elder${late ? " overdue" : ""}${quiet ? " quiet" : ""}`, "data-resident-id": e.resident_id },
      el("h3", { text: `${e.display_name} · ${e.elder_code}` }),
      el("p", {}, ...e.category_labels.map((c) => el("span", { class: "badge" }, c)),
        e.assessment_overdue ? el("span", { class: "badge late" }, t("worker.reassess")) : null),
      e.due.length === 0 ? null : el("ul", {}, ...e.due.map((d) => el("li", { class: d.overdue ? "due late" : "due" },
        t("worker.due_line", { kind: t(`visits.kind.${d.kind}`), days: d.interval_days, day: day(d.due_on) }) +
          (d.overdue ? " " : ""),
        d.overdue ? el("span", { class: "badge late" }, t("worker.late")) : null))),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "record-visit", onclick: () => openVisit(e) }, t("worker.record_visit")),
        callButton({ residentId: e.resident_id, name: e.display_name })));
  }

  // 呼叫 (worker-calls.js): community workers call their own elders and the elders' families.
  const callHooks = {
    report: showError,
    clear: clearError,
    onVisit: (residentId, name, note) => openPhoneVisit(residentId, name, note),
    onClose: () => { ui.work.hidden = false; load(); },
  };
  function callButton(ctx) {
    if (SHG.role() !== "community_worker") return null;
    return el("button", { type: "button", class: "call-open secondary", onclick: () => {
      clearError(); ui.notice.hidden = true; ui.work.hidden = true;
      SHG_WORKER_CALLS.open(ctx, callHooks);
    } }, SHG.t("wcalls.open"));
  }

  async function load() {
    try {
      const w = await api("/visits/worklist");
      // Every time in the site's zone: the one site of her elders and tasks; with several,
      // each card's times in its own site's zone (the task's utc_offset_s).
      const all = [...w.tasks, ...w.elders, ...(w.others || [])];
      const zones = new Set(all.map((x) => `${x.utc_offset_s} ${Boolean(x.demo_clock)}`));
      if (zones.size === 1) SHG.setSiteOffset(all[0].utc_offset_s, all[0].demo_clock);
      ui.summary.textContent = t("worker.summary", { overdue: w.overdue, tasks: w.tasks.length });
      ui.tasks.replaceChildren(...(w.tasks.length ? w.tasks.map(taskCard)
        : [el("p", { class: "muted", text: t("worker.no_tasks") })]));
      ui.elders.replaceChildren(...(w.elders.length ? w.elders.map((e) => elderCard(e))
        : [el("p", { class: "muted", text: t("worker.nothing_due") })]));
      const others = w.others || [];
      ui.othersSection.hidden = !others.length;
      ui.others.replaceChildren(...others.map((e) => elderCard(e, true)));
      clearError();
    } catch (err) {
      if (err instanceof SHG.ApiError && err.status === 401) { signOut(t("worker.sign_in_again")); return; }
      showError(t("worker.update_failed", { detail: err.message || err }));
    }
  }

  function openForm(title) {
    ui.title.textContent = title;
    ui.code.value = ""; ui.notes.value = ""; ui.concerns.value = "";
    proofMethod = "typed";
    ui.work.hidden = true; ui.record.hidden = false; ui.notice.hidden = true;
    ui.code.focus();
  }
  function openVisit(e) {
    current = { type: "visit", residentId: e.resident_id };
    const next = e.due.find((d) => d.overdue) || e.due[0];
    ui.kind.value = next ? next.kind : "phone";
    ui.visitFields.hidden = false; ui.resultFields.hidden = true;
    openForm(t("worker.visit_title", { name: e.display_name }));
    syncProof();
  }
  function openPhoneVisit(residentId, name, note) {  // after a connected call: prefilled
    current = { type: "visit", residentId };
    ui.kind.value = "phone"; ui.outcome.value = "well";
    ui.visitFields.hidden = false; ui.resultFields.hidden = true;
    openForm(t("worker.visit_title", { name }));
    ui.notes.value = note || "";
    syncProof();
  }
  function openTask(task) {
    current = { type: "task", taskId: task.id };
    ui.visitFields.hidden = true; ui.resultFields.hidden = false;
    ui.proof.hidden = false;
    openForm(t("worker.task_title", { name: task.display_name }));
  }
  function closeForm() {
    stopCamera();
    ui.record.hidden = true; ui.work.hidden = false; current = null;
  }
  function syncProof() { ui.proof.hidden = current?.type === "visit" && ui.kind.value !== "home"; }

  // -- the scanner: BarcodeDetector where the browser has one; typed otherwise ----------
  const canScan = "BarcodeDetector" in window && navigator.mediaDevices?.getUserMedia;
  ui.scan.hidden = !canScan;
  ui.scanHint.hidden = Boolean(canScan);
  function stopCamera() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null; ui.camera.hidden = true;
  }
  async function scan() {
    try {
      const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      ui.camera.srcObject = stream; ui.camera.hidden = false;
      await ui.camera.play();
      while (stream) {
        const found = await detector.detect(ui.camera).catch(() => []);
        if (found.length) {
          ui.code.value = found[0].rawValue.trim();
          proofMethod = "scan";
          stopCamera();
          tell(t("worker.scanned", { code: ui.code.value }));
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } catch (err) {
      stopCamera();
      ui.scanHint.hidden = false;
      showError(t("worker.camera_failed", { detail: err.message || err }));
    }
  }
  ui.scan.addEventListener("click", scan);
  ui.code.addEventListener("input", () => { proofMethod = "typed"; });
  ui.kind.addEventListener("change", syncProof);
  ui.cancel.addEventListener("click", closeForm);

  ui.recordForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    const code = ui.code.value.trim();
    const notes = ui.notes.value.trim() || null;
    try {
      if (current.type === "visit") {
        const body = { kind: ui.kind.value, outcome: ui.outcome.value, notes,
          concerns: ui.concerns.value.split(/[,，、]/).map((s) => s.trim()).filter(Boolean) };
        if (body.kind === "home") Object.assign(body, { proof_code: code, proof_method: proofMethod });
        await api(`/visits/residents/${encodeURIComponent(current.residentId)}/visits`, { method: "POST", body });
        tell(t("worker.visit_saved"));
      } else {
        const result = ui.recordForm.querySelector("input[name=result]:checked").value;
        const body = { result, notes };
        if (code) Object.assign(body, { proof_code: code, proof_method: proofMethod });
        const out = await api(`/visits/tasks/${current.taskId}/result`, { method: "POST", body });
        tell(t("worker.task_saved", { result: out.result_label }) +
          (out.incident_state ? t("worker.incident_state", { state: SHG.stateLabel(out.incident_state) }) : ""));
      }
      closeForm();
      load();
    } catch (err) {
      showError(t("worker.save_failed", { detail: err.detail || err.message || err }));
    }
  });

  function start() {
    ui.login.hidden = true; ui.work.hidden = false; ui.signOut.hidden = false;
    load();
    clearInterval(timer);
    timer = setInterval(() => { if (!document.hidden && ui.record.hidden && !SHG_WORKER_CALLS.isOpen()) load(); }, POLL_MS);
  }
  function signOut(message) {
    clearInterval(timer); stopCamera(); SHG_WORKER_CALLS.close(false); SHG.signOut();
    ui.work.hidden = true; ui.record.hidden = true; ui.login.hidden = false; ui.signOut.hidden = true;
    if (message) showError(message);
  }
  ui.signOut.addEventListener("click", () => signOut());
  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (!ROLES.includes(tok.role)) {
        SHG.signOut();
        showError(t("worker.only"));
        return;
      }
      start();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401
        ? t("login.bad") : t("login.failed", { detail: err.message || err }));
    }
  });
  ui.lang.addEventListener("click", () => SHG.toggleLang());
  document.addEventListener("shg:lang", () => {
    translate();
    if (!ui.work.hidden) load();
  });
  translate();
  if (SHG.token() && ROLES.includes(SHG.role())) start();
})();
