/* The demo's site clock (safehome demo runs each site on a shifted clock so every scene
 * plays at any hour): labelled as such, not as an odd zone like "UTC-1:54"; zh-CN first,
 * English second. Loaded right after i18n.js. */
"use strict";

Object.assign(SHG_I18N.messages["zh-CN"], {
  "tz.demo": "演示时钟",
});

Object.assign(SHG_I18N.messages.en, {
  "tz.demo": "demo clock",
});
