/* The district supervisor's page (民政监管): the month's counts for the district, the
 * staffing-ratio table of its nursing homes for the coming week, and the month's per-bed
 * report as a PDF download (codes only). No names. */
"use strict";

(() => {
  const { api, el } = SHG;
  const $ = (id) => document.getElementById(id);
  const ui = { login: $("login"), form: $("login-form"), user: $("username"), pass: $("password"),
    board: $("board"), month: $("month"), figures: $("figures"), staffing: $("staffing"),
    error: $("error"), signOut: $("sign-out"), title: $("figures-title"), pdf: $("bed-report") };
  const ROLES = ["district_supervisor", "supervisor", "admin"];
  const FIGURES = [
    ["beds_served", "服务床位 Beds served"],
    ["device_online_rate", "设备在线率 Devices online", (v) => v === null ? "—" : `${(v * 100).toFixed(1)}%`],
    ["alarms", "告警 Alarms"],
    ["alarms_answered_in_target", "60 秒内响应 Answered ≤60 s"],
    ["median_answer_s", "响应中位数 Median answer", (v) => v === null ? "—" : SHG.duration(v)],
    ["visits_due", "应探访 Visits due"],
    ["visits_overdue", "逾期探访 Overdue"],
    ["home_visit_rate", "月上门探访率 Home-visit rate", (v) => v === null ? "—" : `${(v * 100).toFixed(0)}%`],
    ["phone_visits", "电话探访 Phone visits"],
    ["home_visits", "上门探访 Home visits"],
    ["door_knock_open", "未完成敲门 Open door-knocks"],
    ["reassessments_due", "待重新评估 Re-assessments due"],
    ["short_shifts_next_week", "缺员班次 Short shifts"],
  ];
  const showError = (t) => { ui.error.textContent = t; ui.error.hidden = false; };
  const clearError = () => { ui.error.hidden = true; };
  const local = new Date(Date.now() + 8 * 3600 * 1000);
  ui.month.value = local.toISOString().slice(0, 7);

  async function load() {
    clearError();
    try {
      if (SHG.role() !== "supervisor") {
        const d = await api(`/supervision/district?month=${ui.month.value}`);
        ui.title.textContent = `${d.district_id} · ${d.month} · ${d.sites.length} 个机构 sites`;
        ui.figures.replaceChildren(...FIGURES.map(([key, label, fmt]) => el("div", { class: "figure", "data-key": key },
          el("b", { text: fmt ? fmt(d.totals[key]) : String(d.totals[key] ?? "—") }), label)));
      }
      const rows = await api("/supervision/staffing?days=7");
      ui.staffing.replaceChildren(...rows.map((r) => el("tr", { class: r.compliant ? "ok" : "short" },
        el("td", { text: r.site_id }), el("td", { text: r.day }), el("td", { text: r.label }),
        el("td", { text: String(r.required) }), el("td", { text: String(r.on_duty) }),
        el("td", { text: r.compliant ? "达标 OK" : `缺 ${r.shortfall} 人 short` }))));
    } catch (err) {
      showError(`无法读取 Could not load: ${err.detail || err.message || err}`);
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
      showError(`无法下载 Could not download: ${err.detail || err.message || err}`);
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
      if (!ROLES.includes(tok.role)) { SHG.signOut(); showError("无权访问 · Not for this role"); return; }
      start();
    } catch (err) {
      showError(`登录失败 Sign-in failed: ${err.detail || err.message || err}`);
    }
  });
  if (SHG.token() && ROLES.includes(SHG.role())) start();
})();
