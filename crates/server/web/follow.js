/**
 * @file Following a live run over server-sent events
 * (`/api/runs/{task}/{run}/follow`).
 *
 * The stream sends `state` (first, then on every change), `entries`
 * (`id` = the last seq in it), `end` (the run is finished and everything
 * was sent) and `failure` (then it closes). The browser reconnects by
 * itself after a dropped connection, sending `Last-Event-ID`, and the
 * server resumes after that seq. If the EventSource gives up (CLOSED: the
 * server answered with an error, e.g. while restarting), this reconnects
 * with `from_seq = last seen + 1` after a growing pause. Either way an
 * entry with `seq <= last seen` is ignored, so the page gets every entry
 * once, with no gap and no duplicate.
 *
 * An EventSource cannot tell why it was closed. So before reconnecting,
 * one JSON request for the run asks: a 401 (the session expired) shows
 * the sign-in form through `api.js`, which stops the page and with it
 * this follower; NOT_FOUND or PERMISSION_DENIED end following for good,
 * as does a `failure` event with one of those codes. Only other errors
 * (the server restarting, the network) are retried.
 */

import { getJson, runPath } from "./api.js";

/** First pause before reconnecting a closed stream; doubled up to MAX. */
const BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 10_000;
/** Pause after a `failure` event before trying again. */
const FAILURE_RETRY_MS = 5000;
/** Error codes that another try cannot fix: following stops. */
const FINAL_CODES = ["NOT_FOUND", "PERMISSION_DENIED"];

/**
 * Callbacks of a follower.
 *
 * @typedef {object} FollowHandlers
 * @property {(state: any) => void} onState the run's state changed
 * @property {(entries: any[]) => void} onEntries new entries, in seq order, none seen before
 * @property {() => void} onEnd the run is finished and all of it was sent
 * @property {(status: "live"|"reconnecting"|"failed"|"stopped", message?: string) => void} onStatus
 *   `stopped`: following ended for good (the run is gone or not readable)
 */

/** Follows a run's new entries. */
export class Follower {
  /**
   * @param {string} taskId
   * @param {string} runId
   * @param {FollowHandlers} handlers
   */
  constructor(taskId, runId, handlers) {
    this.path = runPath(taskId, runId, "/follow");
    this.runPath = runPath(taskId, runId);
    this.handlers = handlers;
    /** @type {EventSource|null} */
    this.source = null;
    /** the last seq handed on */
    this.lastSeq = 0;
    this.backoff = BACKOFF_MS;
    this.timer = 0;
    this.stopped = true;
    /** counts starts, so that an answer for an earlier start is ignored */
    this.generation = 0;
  }

  /**
   * Starts following from `fromSeq` (the first seq not yet held).
   *
   * @param {number} fromSeq
   */
  start(fromSeq) {
    this.stop();
    this.stopped = false;
    this.generation++;
    this.lastSeq = fromSeq - 1;
    this.connect();
  }

  /** Stops following; no reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  /** True while following (connected or about to reconnect). */
  get running() {
    return !this.stopped;
  }

  /** Opens an EventSource from the seq after the last seen. */
  connect() {
    if (this.stopped) return;
    const source = new EventSource(`${this.path}?from_seq=${this.lastSeq + 1}`);
    this.source = source;
    source.addEventListener("open", () => {
      this.backoff = BACKOFF_MS;
      this.handlers.onStatus("live");
    });
    source.addEventListener("state", (event) => {
      const state = parse(event);
      if (state) this.handlers.onState(state);
    });
    source.addEventListener("entries", (event) => {
      const data = parse(event);
      if (!data || !Array.isArray(data.entries)) return;
      const fresh = data.entries.filter((e) => e.seq > this.lastSeq);
      if (!fresh.length) return;
      this.lastSeq = fresh[fresh.length - 1].seq;
      this.handlers.onEntries(fresh);
    });
    source.addEventListener("end", () => {
      this.stop();
      this.handlers.onEnd();
    });
    source.addEventListener("failure", (event) => {
      const data = parse(event) || {};
      source.close();
      this.source = null;
      const message = data.error || "the stream failed";
      if (FINAL_CODES.includes(data.code)) {
        this.stop();
        this.handlers.onStatus("stopped", message);
      } else if (data.code === "UNAUTHENTICATED") {
        this.check(FAILURE_RETRY_MS);
      } else {
        this.handlers.onStatus("failed", message);
        this.retry(FAILURE_RETRY_MS);
      }
    });
    source.addEventListener("error", () => {
      if (this.source !== source || this.stopped) return;
      this.handlers.onStatus("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.check(this.backoff);
        this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
      }
    });
  }

  /**
   * Asks the JSON API why the stream closed (one request), then stops for
   * good or reconnects after `ms`. A 401 shows the sign-in form, which
   * stops the page and this follower with it.
   *
   * @param {number} ms
   */
  async check(ms) {
    clearTimeout(this.timer);
    const generation = this.generation;
    const current = () => !this.stopped && generation === this.generation;
    try {
      await getJson(this.runPath);
    } catch (err) {
      if (!current()) return;
      if (err && err.code === "UNAUTHENTICATED") {
        this.stop();
        return;
      }
      if (err && FINAL_CODES.includes(err.code)) {
        this.stop();
        this.handlers.onStatus("stopped", err.message);
        return;
      }
    }
    if (current()) this.retry(ms);
  }

  /**
   * Reconnects after `ms`.
   *
   * @param {number} ms
   */
  retry(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }
}

/**
 * The JSON data of an event, or null if it is not JSON.
 *
 * @param {Event} event
 * @returns {any}
 */
function parse(event) {
  try {
    return JSON.parse(/** @type {MessageEvent} */ (event).data);
  } catch {
    return null;
  }
}
