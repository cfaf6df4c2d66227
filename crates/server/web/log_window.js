/**
 * @file The window of a run's entries that the page holds: a contiguous
 * seq range, loaded page by page from `/entries`, bounded in count and
 * bytes so that a run of millions of entries never sits in memory whole.
 *
 * The run page moves the window: the tail first, a page around a seq (a
 * `#L` link, a search match, the position control), the previous page when
 * the reader nears its top (`to_seq=lo-1&tail=N`), the next one near its
 * bottom (`from_seq=hi+1`). Pages far from the reader are dropped. While
 * the window reaches the end of what is stored (`atEnd`), live entries
 * from the follow stream are appended to it.
 */

import { getJson, query, runPath } from "./api.js";

/** Entries asked for per page. */
export const PAGE_SIZE = 5000;
/** Most entries held at once. */
export const MAX_ENTRIES = 50_000;
/** Most characters of entry text held at once (about 2× that in bytes). */
export const MAX_CHARS = 8 * 1024 * 1024;

/** A contiguous range of a run's entries. */
export class EntryWindow {
  /**
   * @param {string} taskId
   * @param {string} runId
   */
  constructor(taskId, runId) {
    this.path = runPath(taskId, runId, "/entries");
    /** @type {any[]} entries, by seq */
    this.entries = [];
    /** characters of text held */
    this.chars = 0;
    /** true when no entry comes before the first held */
    this.atStart = true;
    /** true when no stored entry came after the last held, at the last load */
    this.atEnd = true;
    /** where the history went on after the last load (for following) */
    this.nextSeq = 1;
    /** the run's state at the last load */
    this.state = null;
  }

  /** @returns {number} the first seq held (nextSeq when empty) */
  get lo() {
    return this.entries.length ? this.entries[0].seq : this.nextSeq;
  }

  /** @returns {number} the last seq held (lo - 1 when empty) */
  get hi() {
    return this.entries.length ? this.entries[this.entries.length - 1].seq : this.nextSeq - 1;
  }

  /**
   * Fetches a page of entries.
   *
   * @param {Record<string, number>} params
   * @returns {Promise<{entries: any[], nextSeq: number, state: any, more: boolean}>}
   */
  async fetch(params) {
    const page = await getJson(`${this.path}${query(params)}`);
    if (page.state) this.state = page.state;
    page.entries = page.entries || [];
    return page;
  }

  /** Replaces the window with the last page of the run. */
  async loadTail() {
    const page = await this.fetch({ tail: PAGE_SIZE });
    this.replace(page.entries);
    this.atEnd = !page.more;
    this.nextSeq = page.nextSeq ?? this.hi + 1;
    this.atStart = !page.entries.length || page.entries[0].seq <= 1;
  }

  /**
   * Replaces the window with a page around `seq` (from a little before it).
   *
   * @param {number} seq
   */
  async loadAround(seq) {
    const from = Math.max(1, seq - Math.floor(PAGE_SIZE / 4));
    const page = await this.fetch({ from_seq: from, limit: PAGE_SIZE });
    if (!page.entries.length && from > 1) {
      // Past the end: show the tail instead.
      await this.loadTail();
      return;
    }
    this.replace(page.entries);
    this.atEnd = !page.more;
    this.nextSeq = page.nextSeq ?? this.hi + 1;
    this.atStart = from <= 1;
  }

  /**
   * Loads the page before the window.
   *
   * @returns {Promise<number>} how many entries were added
   */
  async loadPrev() {
    if (this.atStart) return 0;
    const lo = this.lo;
    const page = await this.fetch({ to_seq: lo - 1, tail: PAGE_SIZE });
    const added = page.entries.filter((e) => e.seq < lo);
    if (!added.length) {
      this.atStart = true;
      return 0;
    }
    this.entries = added.concat(this.entries);
    this.chars += textSize(added);
    this.atStart = added[0].seq <= 1;
    this.trim("bottom");
    return added.length;
  }

  /**
   * Loads the page after the window.
   *
   * @returns {Promise<number>} how many entries were added
   */
  async loadNext() {
    if (this.atEnd) return 0;
    const page = await this.fetch({ from_seq: this.hi + 1, limit: PAGE_SIZE });
    const added = page.entries.filter((e) => e.seq > this.hi);
    this.entries.push(...added);
    this.chars += textSize(added);
    this.atEnd = !page.more;
    this.nextSeq = page.nextSeq ?? this.hi + 1;
    this.trim("top");
    return added.length;
  }

  /**
   * Appends entries from the follow stream; only those after the window.
   *
   * @param {any[]} entries
   * @returns {any[]} the entries taken
   */
  appendLive(entries) {
    const hi = this.hi;
    const added = entries.filter((e) => e.seq > hi);
    this.entries.push(...added);
    this.chars += textSize(added);
    if (added.length) this.nextSeq = added[added.length - 1].seq + 1;
    return added;
  }

  /**
   * True when the window holds more than its bounds allow by a page, so
   * that a live window is trimmed a page at a time, not per entry.
   *
   * @returns {boolean}
   */
  overfull() {
    return this.entries.length > MAX_ENTRIES + PAGE_SIZE || this.chars > MAX_CHARS * 1.25;
  }

  /**
   * Drops entries from one side until the window is within its bounds.
   *
   * @param {"top"|"bottom"} side the side away from the reader
   * @returns {boolean} whether anything was dropped
   */
  trim(side) {
    let drop = 0;
    let chars = this.chars;
    const n = this.entries.length;
    while (n - drop > PAGE_SIZE && (n - drop > MAX_ENTRIES || chars > MAX_CHARS)) {
      const e = this.entries[side === "top" ? drop : n - 1 - drop];
      chars -= entrySize(e);
      drop++;
    }
    if (!drop) return false;
    if (side === "top") {
      this.entries = this.entries.slice(drop);
      this.atStart = false;
    } else {
      this.entries = this.entries.slice(0, n - drop);
      this.atEnd = false;
      this.nextSeq = this.hi + 1;
    }
    this.chars = chars;
    return true;
  }

  /**
   * Replaces every entry.
   *
   * @param {any[]} entries
   */
  replace(entries) {
    this.entries = entries;
    this.chars = textSize(entries);
  }
}

/**
 * The characters of text in an entry (its chunk or rendered line).
 *
 * @param {any} e
 * @returns {number}
 */
function entrySize(e) {
  return (e.text ? e.text.length : 0) + (e.renderedLine ? e.renderedLine.length : 0) + 64;
}

/**
 * The characters of text in entries.
 *
 * @param {any[]} entries
 * @returns {number}
 */
function textSize(entries) {
  let n = 0;
  for (const e of entries) n += entrySize(e);
  return n;
}
