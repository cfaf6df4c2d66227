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
 *
 * The window is always one contiguous seq range. A page is bounded in
 * entries and in bytes (about 4 MiB), so it may hold fewer entries than
 * asked for: a `tail` page holds the last entries of its range that fit
 * (its first entry tells where it starts), and a forward page with `more`
 * goes on at `nextSeq`. Nothing here assumes a page is full.
 *
 * The window also keeps, per channel, whether its first chunk continues a
 * line begun before it (`continues`), from the page that holds its first
 * entries, or, after its top was dropped, from what was dropped.
 */

import { getJson, query, runPath } from "./api.js";

/** Entries asked for per page. */
export const PAGE_SIZE = 5000;
/** Most entries held at once. */
export const MAX_ENTRIES = 50_000;
/** Most characters of entry text held at once (about 2× that in bytes). */
export const MAX_CHARS = 8 * 1024 * 1024;
/**
 * Most lines held at once: a row is about 20 px high and browsers cap an
 * element's height near 33.5 million px (Chrome), so 1,000,000 lines (and
 * a quarter more before a trim) stay scrollable to the last.
 */
export const MAX_LINES = 1_000_000;

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
    /** lines begun in the entries held (newlines, plus one per entry) */
    this.lineCount = 0;
    /** @type {{stdout: boolean, stderr: boolean}} whether the first chunk of each channel continues an earlier line */
    this.continues = { stdout: false, stderr: false };
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
   * @returns {Promise<{entries: any[], nextSeq: number, state: any, more: boolean, continues: {stdout: boolean, stderr: boolean}}>}
   */
  async fetch(params) {
    const page = await getJson(`${this.path}${query(params)}`);
    if (page.state) this.state = page.state;
    page.entries = page.entries || [];
    page.continues = continuesOf(page);
    return page;
  }

  /** Replaces the window with the last page of the run. */
  async loadTail() {
    const page = await this.fetch({ tail: PAGE_SIZE });
    this.replace(page.entries, page.continues);
    this.atEnd = !page.more;
    this.nextSeq = page.nextSeq ?? this.hi + 1;
    this.atStart = !page.entries.length || page.entries[0].seq <= 1;
    this.trim("top");
  }

  /**
   * Replaces the window with the entries from `seq` on and, when `seq` is
   * not the first, a shorter page before it, so that `seq` is held however
   * few entries fit in a page.
   *
   * @param {number} seq
   */
  async loadAround(seq) {
    const from = Math.max(1, seq);
    const page = await this.fetch({ from_seq: from, limit: PAGE_SIZE });
    if (!page.entries.length && from > 1) {
      // Past the end: show the tail instead.
      await this.loadTail();
      return;
    }
    this.replace(page.entries, page.continues);
    this.atEnd = !page.more;
    this.nextSeq = page.nextSeq ?? this.hi + 1;
    this.atStart = from <= 1;
    if (!this.atStart) await this.loadPrev(Math.floor(PAGE_SIZE / 4));
    this.trim("bottom");
  }

  /**
   * Loads the page before the window. The server gives the last entries
   * before it that fit in a page; should a page still end short of the
   * window (an older server cut it from its start), the gap is filled
   * with forward pages, so the window never has a hole.
   *
   * @param {number} [count] entries to ask for
   * @returns {Promise<number>} how many entries were added
   */
  async loadPrev(count = PAGE_SIZE) {
    if (this.atStart) return 0;
    const lo = this.lo;
    const page = await this.fetch({ to_seq: lo - 1, tail: count });
    let added = page.entries.filter((e) => e.seq < lo);
    if (!added.length) {
      this.atStart = true;
      return 0;
    }
    let continues = page.continues;
    let more = true;
    for (let rounds = 0; more && added[added.length - 1].seq < lo - 1 && rounds < 100; rounds++) {
      const last = added[added.length - 1].seq;
      const next = await this.fetch({ from_seq: last + 1, to_seq: lo - 1, limit: PAGE_SIZE });
      const fill = next.entries.filter((e) => e.seq > last && e.seq < lo);
      more = next.more && fill.length > 0;
      added = added.concat(fill);
    }
    if (added[added.length - 1].seq < lo - 1 && more) {
      // Still a gap (the server gave nothing more): start over from the
      // entries before the window, rather than hold a hole.
      added = [];
      continues = this.continues;
    }
    if (!added.length) return 0;
    this.entries = added.concat(this.entries);
    this.chars += textSize(added);
    this.lineCount += lineSize(added);
    this.continues = continues;
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
    this.push(added);
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
    this.push(added);
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
    return this.entries.length > MAX_ENTRIES + PAGE_SIZE || this.chars > MAX_CHARS * 1.25 ||
      this.lineCount > MAX_LINES * 1.25;
  }

  /**
   * Appends entries after the last one held.
   *
   * @param {any[]} added
   */
  push(added) {
    for (const e of added) this.entries.push(e);
    this.chars += textSize(added);
    this.lineCount += lineSize(added);
  }

  /**
   * Drops entries from one side until the window is within its bounds
   * (entries, characters and lines); the last entry left is never
   * dropped, however large.
   *
   * @param {"top"|"bottom"} side the side away from the reader
   * @returns {boolean} whether anything was dropped
   */
  trim(side) {
    let drop = 0;
    let chars = this.chars;
    let lines = this.lineCount;
    const n = this.entries.length;
    while (n - drop > 1 && (n - drop > MAX_ENTRIES || chars > MAX_CHARS || lines > MAX_LINES)) {
      const e = this.entries[side === "top" ? drop : n - 1 - drop];
      chars -= entrySize(e);
      lines -= entryLines(e);
      drop++;
    }
    if (!drop) return false;
    if (side === "top") {
      // What the dropped entries tell about the new first entry: a channel
      // whose last dropped chunk did not end a line continues it.
      const continues = { ...this.continues };
      const seen = { stdout: false, stderr: false };
      for (let k = drop - 1; k >= 0; k--) {
        const e = this.entries[k];
        if (!(e.channel in seen) || seen[e.channel] || !e.text) continue;
        seen[e.channel] = true;
        continues[e.channel] = !(e.text ?? "").endsWith("\n");
        if (seen.stdout && seen.stderr) break;
      }
      this.continues = continues;
      this.entries = this.entries.slice(drop);
      this.atStart = false;
    } else {
      this.entries = this.entries.slice(0, n - drop);
      this.atEnd = false;
      this.nextSeq = this.hi + 1;
    }
    this.chars = chars;
    this.lineCount = lines;
    return true;
  }

  /**
   * Replaces every entry.
   *
   * @param {any[]} entries
   * @param {{stdout: boolean, stderr: boolean}} continues of the page holding the first
   */
  replace(entries, continues) {
    this.entries = entries;
    this.chars = textSize(entries);
    this.lineCount = lineSize(entries);
    this.continues = continues;
  }
}

/**
 * The `continues` flags of a page. A page of a server too old to send
 * them says nothing, and then a page starting after seq 1 may continue a
 * line on either channel.
 *
 * @param {any} page
 * @returns {{stdout: boolean, stderr: boolean}}
 */
function continuesOf(page) {
  const c = page.continues;
  if (c && typeof c === "object") return { stdout: Boolean(c.stdout), stderr: Boolean(c.stderr) };
  const first = page.entries.length ? page.entries[0].seq : 1;
  return { stdout: first > 1, stderr: first > 1 };
}

/**
 * The lines an entry begins at most: one per newline, plus one.
 * Cached on the entry.
 *
 * @param {any} e
 * @returns {number}
 */
function entryLines(e) {
  if (e._lines === undefined) {
    let n = 1;
    const text = e.text;
    if (text) for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
    e._lines = n;
  }
  return e._lines;
}

/**
 * The lines entries begin at most.
 *
 * @param {any[]} entries
 * @returns {number}
 */
function lineSize(entries) {
  let n = 0;
  for (const e of entries) n += entryLines(e);
  return n;
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
