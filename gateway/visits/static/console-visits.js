/* The visiting-care panel of the staff console (loaded by one line in console.html): overdue
 * visits of the site, the notices sent to supervisors, and the open door-knock tasks. It
 * reads the role-checked API with the console's token every 60 s while signed in. */
"use strict";

(() => {
  const { api, el, t } = SHG;
  const STAFF = ["duty_staff", "supervisor", "admin"];
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
        e.due.filter((d) => d.overdue)
          .map((d) => t("cvisits.overdue_item", { kind: t(`visits.kind.${d.kind}`), day: d.due_on })).join("，")));
      const open = tasks.map((task) => el("li", { "data-task-id": String(task.id), class: task.overdue ? "late" : "" },
        t("cvisits.task_item", { code: task.elder_code, reason: task.reason_label, time: SHG.clock(task.due_at, true, task.utc_offset_s, task.demo_clock) }) +
          (task.overdue ? t("cvisits.task_late") : "")));
      box.replaceChildren(
        el("h2", {}, `${t("cvisits.title")} `, el("span", { id: "visits-overdue-count", class: "count" }, String(over.overdue.length))),
        late.length ? el("ul", { class: "visits-overdue" }, ...late) : el("p", { class: "empty", text: t("cvisits.none_overdue") }),
        el("h3", { text: t("cvisits.tasks", { n: tasks.length }) }),
        open.length ? el("ul", { class: "visits-tasks" }, ...open) : el("p", { class: "empty", text: t("cvisits.no_tasks") }),
        el("p", { class: "visits-notices", text: t("cvisits.notices", { n: over.notices.length }) }));
    } catch (err) {
      box.replaceChildren(el("p", { class: "empty", text: t("cvisits.unavailable", { detail: err.status || err.message }) }));
    }
  }

  setInterval(() => load(true), 60000);
  document.addEventListener("shg:lang", () => load(true)); // the console's language switch
  // Shortly after sign-in (the console shows its board) and whenever it is shown again.
  new MutationObserver(() => load()).observe(document.body, { attributes: true, subtree: true, attributeFilter: ["hidden"] });
  load();
})();
