/**
 * @file The run page's header: what the run is (task, step, attempt,
 * worker, command) and how it goes (status badge `#status[data-status]`,
 * times, duration, exit code, summary), updated from the follow stream's
 * `state` events, plus the raw download link.
 */

import { h, replaceChildren } from "./dom.js";
import { formatTime, runDuration } from "./format.js";

/** The header of a run page. */
export class RunHeader {
  /**
   * @param {string} taskId
   * @param {string} runId
   */
  constructor(taskId, runId) {
    this.taskId = taskId;
    this.runId = runId;
    /** @type {any} */
    this.run = null;
    /** @type {any} */
    this.state = null;
    this.badge = h("span", { id: "status", class: "status", dataset: { status: "unknown" } }, "…");
    this.title = h("h1", {}, taskId);
    this.meta = h("dl", { class: "meta" });
    this.duration = h("dd", { class: "duration" });
    const raw = `/runs/${encodeURIComponent(taskId)}/${encodeURIComponent(runId)}/raw`;
    this.element = h("header", { class: "run-header" },
      h("div", { class: "title-row" },
        h("a", { class: "back", href: "/" }, "← Runs"),
        this.title,
        this.badge,
        h("a", { id: "raw", class: "raw", href: raw, download: `${taskId}-${runId}.log` }, "Raw log")),
      this.meta);
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /**
   * Shows a run's metadata.
   *
   * @param {any} run
   */
  setRun(run) {
    this.run = run;
    if (run.state) this.state = run.state;
    this.render();
  }

  /**
   * Shows a new state of the run.
   *
   * @param {any} state
   */
  setState(state) {
    this.state = state;
    this.render();
  }

  /** Fills the header from `run` and `state`. */
  render() {
    const run = this.run || {};
    const s = this.state || {};
    const status = s.status || "unknown";
    this.badge.dataset.status = status;
    this.badge.textContent = status;
    replaceChildren(this.title, this.taskId,
      run.stepName ? h("span", { class: "step" }, ` / ${run.stepName}`) : null);
    document.title = `${this.taskId}${run.stepName ? ` / ${run.stepName}` : ""} (${status}) – baa-logging`;
    this.duration.textContent = runDuration(s);
    const exit = s.exitCode !== undefined && s.exitCode !== null ? String(s.exitCode) : "";
    /** @type {Array<[string, any, string?]>} */
    const items = [
      ["Task", this.taskId],
      ["Step", run.stepName || run.stepId || ""],
      ["Run", this.runId],
      ["Attempt", s.attempt ?? run.attempt ?? ""],
      ["Worker", run.workerKind || ""],
      ["Command", run.command || "", "command"],
      ["Prompt", run.promptSummary || ""],
      ["Created", formatTime(run.createdAt)],
      ["Started", formatTime(s.startedAt)],
      ["Finished", formatTime(s.finishedAt)],
      ["Exit code", exit, exit && exit !== "0" ? "bad" : ""],
      ["Summary", s.summary || ""],
    ];
    const children = [];
    for (const [label, value, cls] of items) {
      if (value === "" || value === undefined || value === null) continue;
      children.push(h("div", { class: ["item", cls] }, h("dt", {}, label), h("dd", {}, String(value))));
      if (label === "Finished" || (label === "Started" && !s.finishedAt)) {
        children.push(h("div", { class: "item" }, h("dt", {}, "Duration"), this.duration));
      }
    }
    replaceChildren(this.meta, ...children);
  }

  /** Updates the live duration. */
  tick() {
    if (this.state && this.state.status === "running") this.duration.textContent = runDuration(this.state);
  }

  /** Stops the duration timer. */
  stop() {
    clearInterval(this.timer);
  }
}
