/**
 * @file Searching a run through the server (`/api/…/search`), so that the
 * whole run is searched, not only the window the page holds.
 *
 * A match names the entry its line starts in (`seq`), the channel and the
 * line's raw text, with spans in UTF-16 offsets of that text. The page
 * finds the line among those starting in that entry, loads a window
 * around it when it is not held, and marks the spans (`mark.match`).
 */

import { getJson, query, runPath } from "./api.js";
import { h } from "./dom.js";

/** Most matches asked for. */
const MAX_MATCHES = 1000;
/**
 * The fewest characters of a piece of a long line: the server matches a
 * line longer than 64 KiB in pieces of that many bytes (4 bytes a
 * character at most), and only then is a match's text not the whole line.
 */
const PIECE_CHARS = 16 * 1024;

/**
 * A match of the search API.
 *
 * @typedef {object} Match
 * @property {number} seq
 * @property {string} channel
 * @property {string} createdAt
 * @property {string} text
 * @property {Array<[number, number]>} spans
 */

/**
 * What the search needs from the run page.
 *
 * @typedef {object} SearchHost
 * @property {() => string[]} channels the channels shown
 * @property {() => number} topSeq the seq at the top of the view
 * @property {(match: Match) => Promise<void>} reveal shows a match's line
 * @property {() => void} redraw the marks changed
 */

/**
 * Whether `line` is the line of `match`: same entry and channel, and the
 * same text (a line longer than the server's piece size is sent in
 * pieces, so a prefix is taken too).
 *
 * @param {import("./lines.js").Line} line
 * @param {Match} match
 * @returns {boolean}
 */
export function isLineOf(line, match) {
  if (line.seq !== match.seq || line.channel !== match.channel) return false;
  if (line.text === match.text) return true;
  return match.text.length >= PIECE_CHARS && line.text.length > match.text.length &&
    line.text.includes(match.text);
}

/**
 * Picks the line of a match among the lines starting in its entry.
 *
 * @param {import("./lines.js").Line[]} candidates lines with the match's seq
 * @param {Match} match
 * @returns {import("./lines.js").Line|null}
 */
export function pickLine(candidates, match) {
  const same = candidates.filter((l) => l.channel === match.channel);
  return same.find((l) => isLineOf(l, match)) || same[0] || null;
}

/** Search state and its controls. */
export class Search {
  /**
   * @param {string} taskId
   * @param {string} runId
   * @param {SearchHost} host
   */
  constructor(taskId, runId, host) {
    this.path = runPath(taskId, runId, "/search");
    this.host = host;
    /** @type {Match[]} */
    this.matches = [];
    /** @type {Map<number, Match[]>} matches by seq */
    this.bySeq = new Map();
    this.current = -1;
    this.limitReached = false;
    this.pending = null;
    /** counts searches; only the latest one's answer is used */
    this.ticket = 0;

    this.input = h("input", {
      id: "search", type: "search", placeholder: "Search the whole log (/)",
      "aria-label": "Search the log", autocomplete: "off", spellcheck: "false",
    });
    this.regex = h("input", { id: "search-regex", type: "checkbox" });
    this.matchCase = h("input", { id: "search-case", type: "checkbox" });
    this.prevButton = h("button", { id: "search-prev", type: "button", title: "Previous match (N)" }, "↑");
    this.nextButton = h("button", { id: "search-next", type: "button", title: "Next match (n)" }, "↓");
    this.count = h("span", { id: "search-count", "aria-live": "polite" });
    this.element = h("div", { class: "search", role: "search" },
      this.input,
      h("label", { class: "opt", title: "Regular expression" }, this.regex, ".*"),
      h("label", { class: "opt", title: "Match case" }, this.matchCase, "Aa"),
      this.prevButton, this.nextButton, this.count);

    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        if (event.shiftKey) this.prev();
        else if (this.matches.length && this.input.value === this.query) this.next();
        else this.run();
      } else if (event.key === "Escape") {
        event.preventDefault();
        this.input.blur();
      }
    });
    this.input.addEventListener("search", () => {
      if (!this.input.value) this.clear();
    });
    this.prevButton.addEventListener("click", () => this.prev());
    this.nextButton.addEventListener("click", () => this.next());
    this.regex.addEventListener("change", () => this.input.value && this.run());
    this.matchCase.addEventListener("change", () => this.input.value && this.run());
    /** the query the matches are for */
    this.query = "";
  }

  /** Focuses the search box. */
  focus() {
    this.input.focus();
    this.input.select();
  }

  /** Forgets the matches. */
  clear() {
    this.ticket++;
    this.matches = [];
    this.bySeq = new Map();
    this.current = -1;
    this.query = "";
    this.count.textContent = "";
    this.host.redraw();
  }

  /** Searches for the box's text and shows the first match at or after the view. */
  async run() {
    const q = this.input.value;
    if (!q) {
      this.clear();
      return;
    }
    // A slower earlier search must not overwrite this one's answer.
    const ticket = ++this.ticket;
    this.count.textContent = "searching…";
    const params = {
      q,
      literal: !this.regex.checked,
      ignore_case: !this.matchCase.checked,
      channel: this.host.channels(),
      max: MAX_MATCHES,
    };
    let result;
    try {
      result = await getJson(`${this.path}${query(params)}`);
    } catch (err) {
      if (ticket !== this.ticket) return;
      this.matches = [];
      this.bySeq = new Map();
      this.current = -1;
      this.count.textContent = err.message || "search failed";
      this.host.redraw();
      return;
    }
    if (ticket !== this.ticket) return;
    this.query = q;
    this.matches = (result.matches || []).slice().sort((a, b) => a.seq - b.seq);
    this.limitReached = Boolean(result.limitReached);
    this.bySeq = new Map();
    for (const m of this.matches) {
      if (!this.bySeq.has(m.seq)) this.bySeq.set(m.seq, []);
      this.bySeq.get(m.seq).push(m);
    }
    if (!this.matches.length) {
      this.current = -1;
      this.count.textContent = "no matches";
      this.host.redraw();
      return;
    }
    const top = this.host.topSeq();
    const after = this.matches.findIndex((m) => m.seq >= top);
    await this.show(after < 0 ? 0 : after);
  }

  /** Shows the next match (wrapping). */
  next() {
    if (!this.matches.length) {
      if (this.input.value) this.run();
      return;
    }
    this.show((this.current + 1) % this.matches.length);
  }

  /** Shows the previous match (wrapping). */
  prev() {
    if (!this.matches.length) return;
    this.show((this.current - 1 + this.matches.length) % this.matches.length);
  }

  /**
   * Shows match `i`.
   *
   * @param {number} i
   */
  async show(i) {
    this.current = i;
    this.updateCount();
    this.host.redraw();
    await this.host.reveal(this.matches[i]);
  }

  /** Writes "3 of 10" (with + when the server stopped at its limit). */
  updateCount() {
    const total = `${this.matches.length}${this.limitReached ? "+" : ""}`;
    this.count.textContent = this.current >= 0 ? `${this.current + 1} of ${total}` : `${total} matches`;
  }

  /**
   * The search spans to mark in a line.
   *
   * @param {import("./lines.js").Line} line
   * @returns {Array<[number, number]>}
   */
  spansFor(line) {
    const ms = this.bySeq.get(line.seq);
    if (!ms) return [];
    const spans = [];
    for (const m of ms) {
      if (!isLineOf(line, m)) continue;
      const shift = line.text === m.text ? 0 : line.text.indexOf(m.text);
      for (const [a, b] of m.spans || []) spans.push([a + shift, b + shift]);
    }
    return spans;
  }

  /**
   * Whether a line is the one of the current match.
   *
   * @param {import("./lines.js").Line} line
   * @returns {boolean}
   */
  isCurrent(line) {
    const m = this.matches[this.current];
    return Boolean(m) && isLineOf(line, m);
  }
}
