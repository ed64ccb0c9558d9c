/* The visiting-care panel of the staff console (loaded by one line in console.html): overdue
 * visits of the site, the notices sent to supervisors, and the open door-knock tasks. It
 * reads the role-checked API with the console's token every 60 s while signed in. */
"use strict";

(() => {
  const { api, el } = SHG;
  const STAFF = ["duty_staff", "supervisor", "admin"];
  const KIND = { phone: "电话", home: "上门" };
  let panel = null;
  let lastLoad = 0;

  function ensurePanel() {
    const board = document.getElementById("board");
    if (!board) return null;
    if (!panel) {
      document.head.append(el("link", { rel: "stylesheet", href: "/visits/static/console-visits.css" }));
      panel = el("section", { id: "visits-panel", class: "visits-panel", "aria-live": "polite" });
      (board.querySelector(".list-pane") || board).append(panel);
    }
    return panel;
  }

  async function load(force = false) {
    if (!SHG.token() || !STAFF.includes(SHG.role())) return;
    if (!force && Date.now() - lastLoad < 5000) return; // the observer fires in bursts
    lastLoad = Date.now();
    const box = ensurePanel();
    if (!box || box.closest("[hidden]")) return;
    try {
      const [over, tasks] = await Promise.all([api("/visits/overdue"), api("/visits/tasks")]);
      const late = over.overdue.map((e) => el("li", { "data-resident-id": e.resident_id },
        `${e.elder_code} · ${e.display_name} · `,
        e.due.filter((d) => d.overdue).map((d) => `${KIND[d.kind]}探访逾期（应于 ${d.due_on}）`).join("，")));
      const open = tasks.map((t) => el("li", { "data-task-id": String(t.id), class: t.overdue ? "late" : "" },
        `${t.elder_code} · ${t.reason_label} · 截止 ${SHG.clock(t.due_at)}${t.overdue ? " · 已超时" : ""}`));
      box.replaceChildren(
        el("h2", {}, "探访关爱 Visits ", el("span", { id: "visits-overdue-count", class: "count" }, String(over.overdue.length))),
        late.length ? el("ul", { class: "visits-overdue" }, ...late) : el("p", { class: "empty", text: "无逾期探访 · No overdue visits" }),
        el("h3", { text: `敲门任务 Door-knock tasks (${tasks.length})` }),
        open.length ? el("ul", { class: "visits-tasks" }, ...open) : el("p", { class: "empty", text: "无 · none" }),
        el("p", { class: "visits-notices", text: `已通知主管 Supervisor notices: ${over.notices.length}` }));
    } catch (err) {
      box.replaceChildren(el("p", { class: "empty", text: `探访数据不可用 · visits unavailable (${err.status || err.message})` }));
    }
  }

  setInterval(() => load(true), 60000);
  // Shortly after sign-in (the console shows its board) and whenever it is shown again.
  new MutationObserver(() => load()).observe(document.body, { attributes: true, subtree: true, attributeFilter: ["hidden"] });
  load();
})();
