/**
 * @file The run page (`/runs/{taskId}/{runId}`): the header, the toolbar
 * (search, channels, timestamps, follow, position) and the log.
 *
 * How the pieces fit:
 * - `EntryWindow` holds a bounded, contiguous range of the run's entries;
 *   it starts on the tail (or around the seq of a `#L` link) and moves as
 *   the reader scrolls near its edges, jumps (Home/End, the position
 *   control, a search match) or follows.
 * - `LineAssembler` turns the window's entries into lines; a window change
 *   assembles them again, a live append only adds to them.
 * - `VisibleList` applies the channel filter and the folded groups, and
 *   `Viewport` renders only the rows in view. A live append that brings no
 *   group marker only extends both, so following costs what arrives, not
 *   the size of the window.
 * - Every move that replaces the window stops the follower first and
 *   starts it again from the new window's end, so no entry that arrives
 *   during the fetch is lost.
 * - `Follower` appends new entries over SSE while the window reaches the
 *   end of a live run; when the window is elsewhere it is stopped and the
 *   run's metadata is polled instead, so the header stays current.
 */

import { getJson, runPath } from "./api.js";
import { h, hasModifier, isFormControl, isTyping, replaceChildren } from "./dom.js";
import { Follower } from "./follow.js";
import { formatCount, isFinal } from "./format.js";
import { FoldState, VisibleList, lineMarker } from "./groups.js";
import { renderRow } from "./line_row.js";
import { LineAssembler, parseLineId } from "./lines.js";
import { EntryWindow } from "./log_window.js";
import { ObjectList } from "./objects_list.js";
import { RunHeader } from "./run_header.js";
import { Search, pickLine } from "./search.js";
import { Viewport } from "./viewport.js";

/** Rows from an edge of the window at which the next page is loaded. */
const EDGE_ROWS = 300;
/** How often the run is polled while the window is away from its end. */
const POLL_MS = 2000;
/** Rows moved by j/k and the arrow keys. */
const KEY_ROWS = 1;
const CHANNELS = ["stdout", "stderr", "worker"];

/**
 * Shows the page of a run in `root`.
 *
 * @param {HTMLElement} root
 * @param {string} taskId
 * @param {string} runId
 * @returns {() => void} stops the page (stream, timers, listeners)
 */
export function showRunPage(root, taskId, runId) {
  const header = new RunHeader(taskId, runId);
  const objects = new ObjectList(taskId, runId);
  const win = new EntryWindow(taskId, runId);
  const folds = new FoldState();
  const visible = new VisibleList();
  const channels = new Set(CHANNELS);
  let assembler = new LineAssembler(true);
  let timestamps = false;
  let follow = false;
  /** false once the run is final and all of it was received */
  let live = true;
  /** the last seq the server has, as far as the page knows */
  let runLastSeq = 0;
  /** @type {string|null} the line of the `#L` link */
  let highlightId = null;
  /** @type {string|null} a `#L` line that does not exist yet (live run) */
  let pendingId = null;
  let busy = false;
  let stopped = false;
  let pollTimer = 0;
  let refreshFrame = 0;
  let sliderActive = false;
  /** @type {Promise<boolean>} */
  let queue = Promise.resolve(true);

  // === controls ===
  const search = new Search(taskId, runId, {
    channels: () => CHANNELS.filter((c) => channels.has(c)),
    topSeq: () => viewport.firstVisibleLine()?.seq ?? 0,
    reveal: revealMatch,
    redraw: () => viewport.invalidate(),
  });
  const channelBoxes = CHANNELS.map((c) => h("label", { class: `channel channel-${c}` },
    h("input", { type: "checkbox", name: "channel", value: c, checked: true }), ` ${c}`));
  const tsBox = h("input", { id: "timestamps", type: "checkbox" });
  const followBox = h("input", { id: "follow", type: "checkbox" });
  const slider = h("input", {
    id: "position", type: "range", min: 1, max: 1, value: 1, step: 1, "aria-label": "Position in the run",
  });
  const windowInfo = h("span", { id: "window-info" });
  const conn = h("span", { id: "connection", class: "connection", "aria-live": "polite" });
  const note = h("p", { id: "log-note", class: "note", role: "status", hidden: true });
  const empty = h("p", { class: "log-empty", hidden: true }, "No output yet.");
  const log = h("div", { id: "log", tabindex: 0, "aria-label": "Log output" });

  replaceChildren(root, h("div", { class: "run-page" },
    header.element,
    objects.element,
    h("div", { class: "toolbar" },
      search.element,
      h("div", { class: "channels", role: "group", "aria-label": "Channels" }, channelBoxes),
      h("label", { class: "toggle", title: "Timestamps (t)" }, tsBox, " Timestamps"),
      h("label", { class: "toggle", title: "Follow the end (f)" }, followBox, " Follow"),
      h("div", { class: "position" }, slider, windowInfo),
      conn),
    note,
    h("div", { class: "log-wrap" }, log, empty),
    h("p", { class: "hint" },
      "/ search · n/N next/previous match · t timestamps · f follow · g/G or Home/End top/bottom · j/k scroll")));

  const viewport = new Viewport(log, (line) => renderRow(line, {
    timestamps,
    highlight: line.id === highlightId,
    currentMatch: search.isCurrent(line),
    spans: search.spansFor(line),
    collapsed: lineMarker(line).kind === "start" ? folds.isCollapsed(line) : null,
    onFold: toggleFold,
  }), onScroll);

  // === window and lines ===

  /**
   * Runs window moves one at a time.
   *
   * @param {() => Promise<void>} fn
   * @returns {Promise<boolean>} whether it ran without an error
   */
  function exclusive(fn) {
    const run = async () => {
      if (stopped) return false;
      busy = true;
      try {
        await fn();
        return true;
      } catch (err) {
        if (err && err.code !== "UNAUTHENTICATED") showNote(`Could not load the log: ${err.message}`);
        return false;
      } finally {
        busy = false;
      }
    };
    queue = queue.then(run, run);
    return queue;
  }

  /** Assembles the lines of the whole window again. */
  function reassemble() {
    assembler = new LineAssembler(win.atStart ? true : win.continues);
    for (const e of win.entries) assembler.add(e);
    pendingChanged = [];
    refresh();
  }

  /** @type {import("./lines.js").Line[]} lines a live append changed since the last refresh */
  let pendingChanged = [];

  /** Recomputes the visible lines and renders them. */
  function refresh() {
    cancelAnimationFrame(refreshFrame);
    refreshFrame = 0;
    pendingChanged = [];
    viewport.setLines(visible.build(assembler.lines, channels, folds, live));
    afterRefresh();
  }

  /** Shows what live appends brought, extending the visible lines when it can. */
  function refreshAppended() {
    refreshFrame = 0;
    const changed = pendingChanged;
    pendingChanged = [];
    const added = visible.append(assembler.lines, changed, channels, live);
    if (added === null) {
      refresh();
      return;
    }
    viewport.appendLines(added);
    viewport.scheduleRender();
    afterRefresh();
  }

  /** What follows every refresh: the end in view when following, the info. */
  function afterRefresh() {
    if (follow) viewport.scrollToBottom();
    empty.hidden = viewport.lines.length > 0;
    updateInfo();
  }

  /** Refreshes on the next frame (many live batches, one layout). */
  function scheduleRefresh() {
    if (!refreshFrame) refreshFrame = requestAnimationFrame(refreshAppended);
  }

  /**
   * Replaces the window (a jump): the follower stops first, so that no
   * entry it would bring during the fetch is lost, and starts again from
   * the new window's end if that is the end of the run.
   *
   * @param {() => Promise<void>} load
   */
  async function replaceWindow(load) {
    if (follower.running) follower.stop();
    await load();
    reassemble();
    if (win.atEnd) attach();
    else detach();
  }

  /** Shows where the window is in the run. */
  function updateInfo() {
    const total = Math.max(runLastSeq, win.hi);
    if (win.entries.length) {
      windowInfo.textContent = `entries ${formatCount(win.lo)}–${formatCount(win.hi)} of ${formatCount(total)}`;
    } else {
      windowInfo.textContent = `no entries${total ? ` of ${formatCount(total)}` : ""}`;
    }
    slider.max = String(Math.max(1, total));
    // The line-number gutter fits the longest id (`1234567.12`).
    log.style.setProperty("--ln-width", `${String(total).length + 6}ch`);
    if (!sliderActive) slider.value = String(viewport.firstVisibleLine()?.seq ?? win.lo);
  }

  /** Loads the next or previous page when the view nears an edge of the window. */
  function maybeLoadMore() {
    if (busy || stopped) return;
    const [first, last] = viewport.visibleRange();
    if (first < EDGE_ROWS && !win.atStart) {
      exclusive(async () => {
        await win.loadPrev();
        reassemble();
        if (!win.atEnd) detach();
      }).then((ok) => ok && setTimeout(maybeLoadMore, 0));
    } else if (last > viewport.lines.length - EDGE_ROWS && !win.atEnd) {
      exclusive(async () => {
        await win.loadNext();
        reassemble();
        if (win.atEnd) attach();
      }).then((ok) => ok && setTimeout(maybeLoadMore, 0));
    }
  }

  // === following ===

  const follower = new Follower(taskId, runId, {
    onState(state) {
      header.setState(state);
      objects.load();
    },
    onEntries(entries) {
      if (!win.atEnd) return;
      const added = win.appendLive(entries);
      for (const e of added) {
        for (const line of assembler.add(e)) pendingChanged.push(line);
      }
      // Drop from the side away from the reader; away from the end means
      // the window no longer follows. Only a trim that dropped something
      // assembles the window again.
      const top = viewport.firstVisibleLine();
      const readerInUpperHalf = top && top.seq < (win.lo + win.hi) / 2 && !follow;
      // (Not while a page loads: it would join its page to a moved edge.)
      if (!busy && win.overfull() && win.trim(readerInUpperHalf ? "bottom" : "top")) {
        reassemble();
        if (!win.atEnd) detach();
      } else {
        scheduleRefresh();
      }
      if (pendingId && assembler.byId.has(pendingId)) {
        requestAnimationFrame(() => goToLine(/** @type {string} */ (pendingId), "center"));
      }
    },
    onEnd() {
      live = false;
      // The group that was running stays open as the reader saw it.
      if (folds.running) folds.set(folds.running, false);
      conn.textContent = "";
      conn.dataset.state = "ended";
      // Nothing more will come: following is over, the header final.
      follow = false;
      followBox.checked = false;
      refreshRun();
      refresh();
    },
    onStatus(status, message) {
      conn.dataset.state = status;
      conn.textContent = status === "live" ? "● live"
        : status === "reconnecting" ? "reconnecting…"
          : status === "stopped" ? `stream stopped: ${message}`
            : `stream failed: ${message}; retrying`;
      if (status === "stopped") {
        showNote(`Following stopped: ${message}`);
        if (follow) setFollow(false);
      }
    },
  });

  /** Follows the run if the window is at its end and it is live. */
  function attach() {
    clearTimeout(pollTimer);
    if (live && win.atEnd && !follower.running) follower.start(win.hi + 1);
  }

  /** Stops following (the window moved away from the end); polls the run instead. */
  function detach() {
    if (follower.running) follower.stop();
    conn.textContent = "";
    if (follow) setFollow(false);
    schedulePoll();
  }

  /** Polls the run's metadata while live and not following. */
  function schedulePoll() {
    clearTimeout(pollTimer);
    if (!stopped && live && !follower.running) {
      pollTimer = setTimeout(async () => {
        await refreshRun();
        schedulePoll();
      }, POLL_MS);
    }
  }

  /** Fetches the run's metadata into the header. */
  async function refreshRun() {
    try {
      const run = await getJson(runPath(taskId, runId));
      header.setRun(run);
      runLastSeq = Math.max(runLastSeq, run.summary?.lastSeq ?? 0);
      if (run.state && isFinal(run.state.status) && !follower.running) live = false;
      updateInfo();
    } catch {
      // the next poll tries again
    }
  }

  /**
   * Turns following the end on or off.
   *
   * @param {boolean} on
   */
  function setFollow(on) {
    follow = on;
    followBox.checked = on;
    if (on) bottom();
  }

  // === navigation ===

  /**
   * Makes sure the window holds `seq` (if the run has it).
   *
   * @param {number} seq
   */
  async function ensureSeq(seq) {
    if (win.entries.length && seq >= win.lo && seq <= win.hi) return;
    if (seq > win.hi && win.atEnd) return; // not written yet
    await replaceWindow(() => win.loadAround(seq));
  }

  /**
   * Scrolls to a line and marks it (`#L` links).
   *
   * @param {string} id
   * @param {"center"|"nearest"} block
   */
  function goToLine(id, block) {
    const key = parseLineId(id);
    if (!key) return Promise.resolve();
    highlightId = id;
    if (follow) setFollow(false);
    return exclusive(async () => {
      await ensureSeq(key.seq);
      const line = assembler.byId.get(id);
      if (!line) {
        if (live && key.seq > win.hi) {
          pendingId = id;
          showNote(`Waiting for line ${id}…`);
        } else {
          pendingId = null;
          showNote(`Line ${id} is not in this run.`);
          viewport.scrollToIndex(viewport.insertionIndex(key), "center");
        }
        viewport.invalidate();
        return;
      }
      pendingId = null;
      showNote("");
      revealLine(line, block);
    });
  }

  /**
   * Shows a line: its channel on, its group open, scrolled into view.
   *
   * @param {any} line
   * @param {"center"|"nearest"} block
   */
  function revealLine(line, block) {
    let changed = false;
    if (!channels.has(line.channel)) {
      channels.add(line.channel);
      for (const label of channelBoxes) {
        const box = /** @type {HTMLInputElement} */ (label.querySelector("input"));
        if (box.value === line.channel) box.checked = true;
      }
      changed = true;
    }
    if (line.header && folds.isCollapsed(line.header)) {
      folds.set(line.header, false);
      changed = true;
    }
    viewport.invalidate();
    if (changed) refresh();
    const i = viewport.indexOf(line);
    if (i !== undefined) viewport.scrollToIndex(i, block);
  }

  /**
   * Shows the line of a search match, loading a window around it if needed.
   *
   * @param {import("./search.js").Match} match
   */
  function revealMatch(match) {
    if (follow) setFollow(false);
    return exclusive(async () => {
      await ensureSeq(match.seq);
      const candidates = [];
      for (let idx = 0; ; idx++) {
        const line = assembler.byId.get(idx ? `${match.seq}.${idx}` : String(match.seq));
        if (!line) break;
        candidates.push(line);
      }
      const line = pickLine(candidates, match);
      if (line) revealLine(line, "center");
      else showNote(`The match at entry ${match.seq} is not in the loaded part of the log.`);
    });
  }

  /** Goes to the start of the run. */
  function top() {
    if (follow) setFollow(false);
    if (win.atStart) {
      viewport.scrollToTop();
      return;
    }
    exclusive(async () => {
      await replaceWindow(() => win.loadAround(1));
      viewport.scrollToTop();
    });
  }

  /** Goes to the end of the run (and follows it if it is live). */
  function bottom() {
    if (win.atEnd) {
      viewport.scrollToBottom();
      if (live && !follow) setFollow(true);
      return;
    }
    exclusive(async () => {
      await replaceWindow(() => win.loadTail());
      viewport.scrollToBottom();
      if (live) {
        follow = true;
        followBox.checked = true;
      }
    });
  }

  /**
   * Goes to the first line at or after a seq (the position control).
   *
   * @param {number} seq
   */
  function goToSeq(seq) {
    if (follow) setFollow(false);
    exclusive(async () => {
      await ensureSeq(seq);
      viewport.scrollToIndex(viewport.insertionIndex({ seq, idx: 0 }), "start");
    });
  }

  /**
   * Folds or unfolds the group of a header line.
   *
   * @param {any} line
   */
  function toggleFold(line) {
    folds.set(line, !folds.isCollapsed(line));
    viewport.invalidate();
    refresh();
  }

  /**
   * Shows (or, with an empty text, hides) a note above the log.
   *
   * @param {string} text
   */
  function showNote(text) {
    note.textContent = text;
    note.hidden = !text;
  }

  /** Follows the reader's scrolling: follow off when leaving the end, pages near the edges. */
  function onScroll() {
    if (viewport.scrolledByReader()) {
      if (viewport.isAtBottom()) {
        if (live && win.atEnd && !follow) {
          follow = true;
          followBox.checked = true;
        }
      } else if (follow) {
        follow = false;
        followBox.checked = false;
      }
    }
    updateInfo();
    maybeLoadMore();
  }

  // === events ===

  for (const label of channelBoxes) {
    const box = /** @type {HTMLInputElement} */ (label.querySelector("input"));
    box.addEventListener("change", () => {
      if (box.checked) channels.add(box.value);
      else channels.delete(box.value);
      refresh();
    });
  }
  tsBox.addEventListener("change", () => {
    timestamps = tsBox.checked;
    log.classList.toggle("show-ts", timestamps);
    viewport.invalidate();
  });
  followBox.addEventListener("change", () => setFollow(followBox.checked));
  slider.addEventListener("pointerdown", () => { sliderActive = true; });
  slider.addEventListener("input", () => {
    sliderActive = true;
    windowInfo.textContent = `go to entry ${formatCount(Number(slider.value))}`;
  });
  slider.addEventListener("change", () => {
    sliderActive = false;
    goToSeq(Number(slider.value));
  });
  log.addEventListener("click", (event) => {
    const link = /** @type {HTMLElement} */ (event.target).closest("a.ln");
    if (!link || hasModifier(event)) return;
    event.preventDefault();
    const id = /** @type {HTMLElement} */ (link.closest(".line")).dataset.line || "";
    history.replaceState(null, "", `#L${id}`);
    goToLine(id, "nearest");
  });

  /** @param {HashChangeEvent} _event */
  const onHash = (_event) => {
    const id = hashLine();
    if (id) goToLine(id, "center");
  };

  /** @param {KeyboardEvent} event */
  const onKey = (event) => {
    if (hasModifier(event)) return;
    // A focused control (the search box, the position slider, a checkbox)
    // keeps its keys: arrows, Home/End and letters are its own.
    if (isTyping(event) || isFormControl(event)) return;
    const rowH = viewport.rowHeight;
    switch (event.key) {
      case "/": search.focus(); break;
      case "n": search.next(); break;
      case "N": search.prev(); break;
      case "t": tsBox.click(); break;
      case "f": setFollow(!follow); break;
      case "g": case "Home": top(); break;
      case "G": case "End": bottom(); break;
      case "j": case "ArrowDown": viewport.scrollBy(KEY_ROWS * rowH); break;
      case "k": case "ArrowUp": viewport.scrollBy(-KEY_ROWS * rowH); break;
      case "PageDown": viewport.scrollBy(log.clientHeight - rowH); break;
      case "PageUp": viewport.scrollBy(-(log.clientHeight - rowH)); break;
      default: return;
    }
    event.preventDefault();
  };
  window.addEventListener("hashchange", onHash);
  document.addEventListener("keydown", onKey);

  // === start ===

  (async () => {
    try {
      const run = await getJson(runPath(taskId, runId));
      header.setRun(run);
      runLastSeq = run.summary?.lastSeq ?? 0;
      live = !isFinal(run.state?.status);
      objects.load();
    } catch (err) {
      if (err.code === "UNAUTHENTICATED" || stopped) return;
      replaceChildren(root, h("div", { class: "notice" },
        h("h1", {}, err.code === "NOT_FOUND" ? "Run not found" : "Could not load the run"),
        h("p", {}, err.message), h("p", {}, h("a", { href: "/" }, "All runs"))));
      header.stop();
      return;
    }
    const target = hashLine();
    const key = target ? parseLineId(target) : null;
    await exclusive(async () => {
      if (key) await win.loadAround(key.seq);
      else await win.loadTail();
      if (win.state) {
        header.setState(win.state);
        if (isFinal(win.state.status) && win.atEnd) live = false;
      }
      runLastSeq = Math.max(runLastSeq, win.hi);
      reassemble();
    });
    if (stopped) return;
    if (target) {
      await goToLine(target, "center");
    } else {
      viewport.scrollToBottom();
      follow = live;
      followBox.checked = live;
    }
    if (win.atEnd) attach();
    else detach();
    log.focus({ preventScroll: true });
  })();

  return () => {
    stopped = true;
    follower.stop();
    header.stop();
    clearTimeout(pollTimer);
    cancelAnimationFrame(refreshFrame);
    viewport.destroy();
    window.removeEventListener("hashchange", onHash);
    document.removeEventListener("keydown", onKey);
  };
}

/**
 * The line id of the address's `#L…` fragment, if any.
 *
 * @returns {string|null}
 */
function hashLine() {
  const m = /^#L(\d+(?:\.\d+)?)$/.exec(location.hash);
  return m ? m[1] : null;
}
