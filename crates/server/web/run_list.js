/**
 * @file The run list (`/`): newest first, filtered by task and status,
 * attempts of the same step shown together, polled every 2 s while the
 * page is visible (the list has no push).
 *
 * The filters live in the address (`/?task=…&status=…`), so a filtered
 * list can be shared and survives a reload. The status filter is applied
 * by the server; the task filter matches any part of the task id (or step
 * name) in the runs fetched.
 */

import { getJson, query } from "./api.js";
import { h, hasModifier, isTyping, replaceChildren } from "./dom.js";
import { formatTime, isFinal, runDuration } from "./format.js";

/** How often the list is fetched again while visible. */
const POLL_MS = 2000;
/** Runs fetched per page of the API. */
const PAGE_SIZE = 200;
const STATUSES = ["prepared", "running", "completed", "failed", "blocked"];

/**
 * The page of a run.
 *
 * @param {{taskId: string, runId: string}} run
 * @returns {string}
 */
export function runHref(run) {
  return `/runs/${encodeURIComponent(run.taskId)}/${encodeURIComponent(run.runId)}`;
}

/**
 * Groups runs by task and step: the latest attempt first, then the earlier
 * ones; groups in the order of their newest run (the API's order).
 *
 * @param {any[]} runs newest first
 * @returns {any[][]}
 */
export function groupAttempts(runs) {
  /** @type {Map<string, any[]>} */
  const groups = new Map();
  for (const run of runs) {
    const key = run.stepId ? `${run.taskId}\u0000${run.stepId}` : `${run.taskId}\u0000\u0000${run.runId}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(run);
  }
  const byAttempt = (a, b) => (b.attempt || 0) - (a.attempt || 0) ||
    String(b.createdAt).localeCompare(String(a.createdAt));
  return [...groups.values()].map((g) => g.sort(byAttempt));
}

/**
 * Shows the run list in `root`.
 *
 * @param {HTMLElement} root
 * @returns {() => void} stops polling and key handling
 */
export function showRunList(root) {
  document.title = "Runs – baa-logging";
  const params = new URLSearchParams(location.search);
  const taskInput = h("input", {
    id: "filter-task", type: "search", placeholder: "Filter by task", value: params.get("task") || "",
    "aria-label": "Filter by task",
  });
  const statusSelect = h("select", { id: "filter-status", "aria-label": "Filter by status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  statusSelect.value = STATUSES.includes(params.get("status") || "") ? params.get("status") : "";
  const info = h("span", { class: "list-info", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "more", hidden: true }, "Show more");
  const table = h("table", { id: "runs" },
    h("thead", {}, h("tr", {},
      ["Status", "Task", "Step", "Attempt", "Run", "Worker", "Created", "Duration", "Summary"]
        .map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  replaceChildren(root, h("div", { class: "run-list" },
    h("header", { class: "bar" },
      h("h1", {}, h("a", { href: "/" }, "Runs")),
      h("div", { class: "filters" }, taskInput, statusSelect),
      info),
    error,
    h("div", { class: "table-wrap" }, table),
    more,
    h("p", { class: "hint" }, "j/k or ↑/↓ select, Enter opens")));

  /** @type {any[]} */ let runs = [];
  let shownSignature = "";
  let limit = PAGE_SIZE;
  let hasMore = false;
  let selectedKey = "";
  let timer = 0;
  let stopped = false;
  let controller = new AbortController();
  /** @type {Array<[HTMLElement, any]>} duration cells of running runs */
  let liveDurations = [];

  const rowKey = (run) => `${run.taskId}\u0000${run.runId}`;

  /** Fetches the newest runs (up to `limit`) with the status filter. */
  async function fetchRuns() {
    controller.abort();
    controller = new AbortController();
    const signal = controller.signal;
    const status = statusSelect.value;
    const all = [];
    let token = "";
    let next = false;
    do {
      const page = await getJson(`/api/runs${query({
        status: status ? [status] : null, page_size: PAGE_SIZE, page_token: token,
      })}`, signal);
      all.push(...(page.runs || []));
      token = page.nextPageToken || "";
      next = Boolean(token);
    } while (token && all.length < limit);
    hasMore = next;
    return all;
  }

  /** Fetches and shows the list; schedules the next poll. */
  async function refresh() {
    clearTimeout(timer);
    try {
      const fetched = await fetchRuns();
      const signature = JSON.stringify(fetched);
      error.hidden = true;
      // Rows are rebuilt only when something changed, so a poll does not
      // swap the row under the reader's pointer.
      if (signature !== shownSignature) {
        shownSignature = signature;
        runs = fetched;
        render();
      }
    } catch (err) {
      if (err.name === "AbortError" || stopped) return;
      if (err.code === "UNAUTHENTICATED") return;
      error.textContent = `Could not load runs: ${err.message}`;
      error.hidden = false;
    }
    schedule();
  }

  /** Polls again in 2 s, if the page is visible. */
  function schedule() {
    clearTimeout(timer);
    if (!stopped && document.visibilityState === "visible") timer = setTimeout(refresh, POLL_MS);
  }

  /** Rebuilds the table from `runs` and the task filter. */
  function render() {
    const needle = taskInput.value.trim().toLowerCase();
    const shown = needle
      ? runs.filter((r) => String(r.taskId).toLowerCase().includes(needle) ||
        String(r.stepName || "").toLowerCase().includes(needle))
      : runs;
    liveDurations = [];
    const rows = [];
    for (const group of groupAttempts(shown)) {
      group.forEach((run, i) => rows.push(renderRow(run, i > 0, group.length)));
    }
    if (rows.length === 0) {
      rows.push(h("tr", { class: "empty" }, h("td", { colspan: 9 },
        runs.length ? "No run matches the filters." : "No runs yet.")));
    }
    replaceChildren(tbody, ...rows);
    info.textContent = `${shown.length} run${shown.length === 1 ? "" : "s"}`;
    more.hidden = !hasMore;
    select(selectedKey, false);
  }

  /**
   * A table row for one run.
   *
   * @param {any} run
   * @param {boolean} earlier an earlier attempt, nested under the latest
   * @param {number} attempts how many attempts its group holds
   * @returns {HTMLElement}
   */
  function renderRow(run, earlier, attempts) {
    const state = run.state || {};
    const status = state.status || "prepared";
    const duration = h("td", { class: "duration" }, runDuration(state));
    if (status === "running") liveDurations.push([duration, state]);
    const tr = h("tr", {
      class: ["run", earlier ? "attempt-earlier" : "attempt-latest"],
      dataset: { task: run.taskId, run: run.runId, key: rowKey(run) },
    },
    h("td", {}, h("span", { class: "status", dataset: { status } }, status)),
    h("td", { class: "task" }, earlier ? "" : run.taskId),
    h("td", { class: "step" }, earlier ? h("span", { class: "nest", "aria-hidden": "true" }, "↳ ") : null,
      run.stepName || run.stepId || ""),
    h("td", { class: "attempt" }, String(run.attempt ?? ""),
      !earlier && attempts > 1 ? h("span", { class: "attempts", title: "attempts of this step" }, ` of ${attempts}`) : null),
    h("td", { class: "run-id" }, h("a", { class: "run-link", href: runHref(run) }, run.runId)),
    h("td", { class: "worker" }, run.workerKind || ""),
    h("td", { class: "created" }, h("time", { datetime: run.createdAt }, formatTime(run.createdAt))),
    duration,
    h("td", { class: "summary" }, summaryText(run)));
    tr.addEventListener("click", (event) => {
      if (/** @type {HTMLElement} */ (event.target).closest("a")) return;
      select(rowKey(run), false);
    });
    return tr;
  }

  /**
   * The last column: the state's summary, or the exit code.
   *
   * @param {any} run
   * @returns {string}
   */
  function summaryText(run) {
    const s = run.state || {};
    const parts = [];
    if (s.summary) parts.push(s.summary);
    else if (s.exitCode !== undefined && s.exitCode !== null && isFinal(s.status)) parts.push(`exit ${s.exitCode}`);
    return parts.join(" · ");
  }

  /** @returns {HTMLElement[]} the rows of runs, in order */
  const rowsOf = () => /** @type {HTMLElement[]} */ ([...tbody.querySelectorAll("tr.run")]);

  /**
   * Selects the row of `key` (or none).
   *
   * @param {string} key
   * @param {boolean} scroll bring it into view
   */
  function select(key, scroll) {
    selectedKey = key;
    for (const tr of rowsOf()) {
      const on = tr.dataset.key === key;
      tr.classList.toggle("selected", on);
      tr.setAttribute("aria-selected", on ? "true" : "false");
      if (on && scroll) tr.scrollIntoView({ block: "nearest" });
    }
  }

  /**
   * Moves the selection by `delta` rows.
   *
   * @param {number} delta
   */
  function move(delta) {
    const rows = rowsOf();
    if (!rows.length) return;
    let i = rows.findIndex((tr) => tr.dataset.key === selectedKey);
    i = i < 0 ? (delta > 0 ? 0 : rows.length - 1) : Math.max(0, Math.min(rows.length - 1, i + delta));
    select(rows[i].dataset.key || "", true);
  }

  /** @param {KeyboardEvent} event */
  function onKey(event) {
    if (isTyping(event) || hasModifier(event)) return;
    if (event.key === "j" || event.key === "ArrowDown") move(1);
    else if (event.key === "k" || event.key === "ArrowUp") move(-1);
    else if (event.key === "Enter") {
      const tr = rowsOf().find((r) => r.dataset.key === selectedKey);
      const link = tr && tr.querySelector("a.run-link");
      if (!link) return;
      location.href = /** @type {HTMLAnchorElement} */ (link).href;
    } else return;
    event.preventDefault();
  }

  /** Keeps the filters in the address. */
  function saveFilters() {
    const q = query({ task: taskInput.value.trim(), status: statusSelect.value });
    history.replaceState(null, "", `/${q}`);
  }

  const onVisibility = () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(timer);
  };
  const tick = setInterval(() => {
    for (const [cell, state] of liveDurations) cell.textContent = runDuration(state);
  }, 1000);
  taskInput.addEventListener("input", () => { saveFilters(); render(); });
  statusSelect.addEventListener("change", () => { saveFilters(); shownSignature = ""; refresh(); });
  more.addEventListener("click", () => { limit += PAGE_SIZE; shownSignature = ""; refresh(); });
  document.addEventListener("keydown", onKey);
  document.addEventListener("visibilitychange", onVisibility);
  refresh();

  return () => {
    stopped = true;
    controller.abort();
    clearTimeout(timer);
    clearInterval(tick);
    document.removeEventListener("keydown", onKey);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
