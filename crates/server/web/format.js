/**
 * @file Formatting of times, durations and counts for display.
 */

/**
 * Formats an RFC 3339 time as local `YYYY-MM-DD HH:MM:SS`; empty for none.
 *
 * @param {string|undefined|null} rfc3339
 * @returns {string}
 */
export function formatTime(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Formats an RFC 3339 time as local `HH:MM:SS.mmm`, for the log gutter.
 *
 * @param {string|undefined|null} rfc3339
 * @returns {string}
 */
export function formatClock(rfc3339) {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * Formats a duration in milliseconds as `1h 2m 3s`, `2m 3s` or `3.4s`.
 *
 * @param {number} ms
 * @returns {string}
 */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return `${h}h ${m}m ${r}s`;
  return `${m}m ${r}s`;
}

/**
 * The duration of a run from its state: start to finish, or to `now` while
 * it runs; empty when it never started.
 *
 * @param {{status: string, startedAt?: string, finishedAt?: string, updatedAt?: string}} state
 * @param {number} [now] milliseconds since the epoch
 * @returns {string}
 */
export function runDuration(state, now = Date.now()) {
  if (!state || !state.startedAt || state.status === "prepared") return "";
  const start = Date.parse(state.startedAt);
  let end;
  if (state.finishedAt) end = Date.parse(state.finishedAt);
  else if (state.status === "running") end = now;
  else end = Date.parse(state.updatedAt || "");
  if (Number.isNaN(start) || Number.isNaN(end)) return "";
  return formatDuration(Math.max(0, end - start));
}

/**
 * True for a status after which a run writes nothing more.
 *
 * @param {string} status
 * @returns {boolean}
 */
export function isFinal(status) {
  return status === "completed" || status === "failed" || status === "blocked";
}

/**
 * Formats an integer with thousands separators (`1,000,000`).
 *
 * @param {number} n
 * @returns {string}
 */
export function formatCount(n) {
  return Number(n || 0).toLocaleString("en-US");
}
