/* The district supervisor's page (民政监管): the month's counts for the district, the
 * staffing-ratio table of its nursing homes for the coming week, and the month's per-bed
 * report as a PDF download (codes only). No names. */
"use strict";

(() => {
  const { api, el, t } = SHG;
  const $ = (id) => document.getElementById(id);
  const ui = { login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    board: $("board"), month: $("month"), figures: $("figures"), staffing: $("staffing"),
    error: $("error"), signOut: $("sign-out"), title: $("figures-title"), pdf: $("bed-report"),
    lang: $("lang") };
  const ROLES = ["district_supervisor", "supervisor", "admin"];
  const FIGURES = [
    ["beds_served"],
    ["device_online_rate", (v) => v === null ? "—" : `${(v * 100).toFixed(1)}%`],
    ["alarms"],
    ["alarms_answered_in_target"],
    ["median_answer_s", (v) => v === null ? "—" : SHG.duration(v)],
    ["visits_due"],
    ["visits_overdue"],
    ["home_visit_rate", (v) => v === null ? "—" : `${(v * 100).toFixed(0)}%`],
    ["phone_visits"],
    ["home_visits"],
    ["door_knock_open"],
    ["reassessments_due"],
    ["short_shifts_next_week"],
  ];  // labels: district.fig.<key> (i18n-visits.js)
  const showError = (text) => { ui.error.textContent = text; ui.error.hidden = false; };
  const clearError = () => { ui.error.hidden = true; };
  const local = new Date(Date.now() + 8 * 3600 * 1000);
  ui.month.value = local.toISOString().slice(0, 7);

  async function load() {
    clearError();
    try {
      if (SHG.role() !== "supervisor") {
        const d = await api(`/supervision/district?month=${ui.month.value}`);
        ui.title.textContent = t("district.heading", { district: d.district_id, month: d.month, n: d.sites.length });
        ui.figures.replaceChildren(...FIGURES.map(([key, fmt]) => el("div", { class: "figure", "data-key": key },
          el("b", { text: fmt ? fmt(d.totals[key]) : String(d.totals[key] ?? "—") }), t(`district.fig.${key}`))));
      }
      const rows = await api("/supervision/staffing?days=7");
      ui.staffing.replaceChildren(...rows.map((r) => el("tr", { class: r.compliant ? "ok" : "short" },
        el("td", { text: r.site_name || r.site_id }), el("td", { text: r.day }), el("td", { text: r.label }),
        el("td", { text: String(r.required) }), el("td", { text: String(r.on_duty) }),
        el("td", { text: r.compliant ? t("district.ok") : t("district.short", { n: r.shortfall }) }))));
    } catch (err) {
      showError(t("district.load_failed", { detail: err.detail || err.message || err }));
    }
  }
  /* The per-bed PDF of the month (the district's, or a site supervisor's own site), fetched
   * with the bearer token and handed to the browser as a download. */
  async function downloadReport() {
    clearError();
    try {
      const path = `/supervision/report.pdf?month=${ui.month.value}`;
      const send = async () => fetch(path, { headers: { Authorization: `Bearer ${await SHG.validToken()}` } });
      let resp = await send();
      if (resp.status === 401 && await SHG.refresh()) resp = await send();
      if (!resp.ok) throw new SHG.ApiError(resp.status, resp.statusText);
      const url = URL.createObjectURL(await resp.blob());
      el("a", { href: url, download: `床位监管月报-${ui.month.value}.pdf` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      showError(t("district.download_failed", { detail: err.detail || err.message || err }));
    }
  }
  ui.pdf.addEventListener("click", downloadReport);
  function start() { ui.login.hidden = true; ui.board.hidden = false; ui.signOut.hidden = false; load(); }
  ui.month.addEventListener("change", load);
  ui.signOut.addEventListener("click", () => {
    SHG.signOut(); ui.board.hidden = true; ui.login.hidden = false; ui.signOut.hidden = true;
  });
  ui.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const tok = await SHG.signIn(ui.user.value.trim(), ui.pass.value);
      ui.pass.value = "";
      if (!ROLES.includes(tok.role)) { SHG.signOut(); showError(t("district.only")); return; }
      start();
    } catch (err) {
      showError(err instanceof SHG.ApiError && err.status === 401
        ? t("login.bad") : t("login.failed", { detail: err.detail || err.message || err }));
    }
  });
  ui.lang.addEventListener("click", () => SHG.toggleLang());
  document.addEventListener("shg:lang", () => { if (!ui.board.hidden) load(); });
  SHG.translatePage();
  if (SHG.token() && ROLES.includes(SHG.role())) start();
})();
