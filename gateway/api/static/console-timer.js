/* The staff console's reconcile clock, in a dedicated worker.
 *
 * Browsers throttle timers of a page in a background tab (Chromium: to once a minute after
 * five hidden minutes), which would stretch the console's 10 s reconcile. A worker's timer
 * posts a message instead, and the page handles messages at once. The page sends
 * { intervalMs } to (re)start the clock and { intervalMs: 0 } to stop it. */
"use strict";

let timer = null;
self.onmessage = (e) => {
  clearInterval(timer);
  timer = null;
  const ms = Number(e.data && e.data.intervalMs);
  if (ms > 0) timer = setInterval(() => self.postMessage("tick"), ms);
};
