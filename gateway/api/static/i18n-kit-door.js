/* The safe-home kit's "door not opened for days" (多日未开门): its incident type label and
 * reason sentence, zh-CN first, English second. Loaded right after i18n.js. */
"use strict";

Object.assign(SHG_I18N.messages["zh-CN"], {
  "type.door_unused": "多日未开门",
});

Object.assign(SHG_I18N.messages.en, {
  "type.door_unused": "Door not opened for days",
});

(() => {
  const days = (d) => (d.unused_days === null || d.unused_days === undefined ? null : Number(d.unused_days));
  SHG_I18N.reasons["zh-CN"].door_unused = (d, h) =>
    `多日未开门：家门已 ${days(d) === null ? "多" : days(d).toFixed(0)} 天未打开（上次开门 ${d.last_opened ? h.clock(d.last_opened) : "—"}），请电话或上门确认老人安好`;
  SHG_I18N.reasons.en.door_unused = (d, h) =>
    `Door not opened for ${days(d) === null ? "several" : days(d).toFixed(0)} days (last opened ${d.last_opened ? h.clock(d.last_opened) : "—"}): call or visit to check the resident is well`;
})();
