/**
 * @file Lines from entries: the page's model of a run's output.
 *
 * A line is what a channel wrote between two newlines, possibly across
 * several chunks of that channel, with other channels' entries between
 * them. Its id is the seq of the entry it starts in, plus its index among
 * the lines that start in that entry when that index is not 0: `1234`,
 * `1234.2`. A lifecycle entry (channel `worker`) is one line, its
 * `renderedLine`. Lines are kept in the order of their start.
 *
 * The assembler sees a window of entries that may start in the middle of
 * the run. The server says, for each channel, whether the window's first
 * chunk of that channel continues a line begun in an earlier entry (the
 * page's `continues` flags). Only then is the text before its first
 * newline left out, until the earlier entries are loaded (the window is
 * then assembled again). So a line's id never depends on where the window
 * starts: the lines of an entry are counted from the first that starts in
 * it, wherever the window begins.
 *
 * Each stdout/stderr line also links to the previous line of its channel
 * (`prev`), so that the ANSI style a line starts with can be carried over
 * from the line before it, as a terminal does (`startStyle`).
 */

import { DEFAULT_STYLE, endStyle } from "./ansi.js";

/**
 * A log line.
 *
 * @typedef {object} Line
 * @property {string} id `1234` or `1234.2`
 * @property {number} seq the entry it starts in
 * @property {number} idx its index among the lines starting in that entry
 * @property {string} channel `stdout`, `stderr` or `worker`
 * @property {string} text raw text, without its newline
 * @property {string} createdAt the time of the entry it starts in
 * @property {boolean} open true while no newline has ended it yet
 * @property {number} version bumped whenever `text` changes
 * @property {string} [level] lifecycle level (`info`, `error`, …)
 * @property {string} [type] lifecycle event type
 * @property {Line|null} [prev] the previous line of the same channel
 */

/**
 * Whether each channel's first chunk continues a line begun before the
 * window (`continues` of the entries API).
 *
 * @typedef {{stdout: boolean, stderr: boolean}} Continues
 */

/** The channels whose chunks are assembled into lines. */
const CHUNK_CHANNELS = ["stdout", "stderr"];

/** Assembles lines from entries given in seq order. */
export class LineAssembler {
  /**
   * @param {boolean|Continues} continues per channel, whether its first
   *   chunk continues an earlier line; `true` (the run's first entry is
   *   given first) means none does, `false` that both may
   */
  constructor(continues) {
    const skip = typeof continues === "boolean"
      ? { stdout: !continues, stderr: !continues }
      : { stdout: Boolean(continues?.stdout), stderr: Boolean(continues?.stderr) };
    /** @type {Line[]} every line, in the order of its start */
    this.lines = [];
    /** @type {Map<string, Line>} lines by id */
    this.byId = new Map();
    /** @type {Record<string, Line|null>} the unfinished line of each channel */
    this.open = { stdout: null, stderr: null };
    /** @type {Record<string, boolean>} channels still inside a fragment of an earlier line */
    this.skipping = skip;
    /** @type {Record<string, Line|null>} the last line of each channel */
    this.last = { stdout: null, stderr: null };
  }

  /**
   * Adds one entry; returns the lines whose text it changed (new lines are
   * also appended to `this.lines`).
   *
   * @param {any} entry an Entry of the API
   * @returns {Line[]} the lines created or extended
   */
  add(entry) {
    const changed = [];
    if (entry.channel === "worker") {
      changed.push(this.push({
        id: String(entry.seq), seq: entry.seq, idx: 0, channel: "worker",
        text: entry.renderedLine ?? entry.message ?? "", createdAt: entry.createdAt,
        open: false, version: 0, level: entry.level, type: entry.type,
      }));
      return changed;
    }
    if (!CHUNK_CHANNELS.includes(entry.channel)) return changed;
    const ch = entry.channel;
    const text = entry.text ?? "";
    let pos = 0;
    const current = this.open[ch];
    if (current || this.skipping[ch]) {
      const nl = text.indexOf("\n");
      const end = nl < 0 ? text.length : nl;
      if (current) {
        if (end > 0) {
          current.text += text.slice(0, end);
          current.version++;
          changed.push(current);
        }
        if (nl >= 0) current.open = false;
      }
      if (nl < 0) return changed;
      this.open[ch] = null;
      this.skipping[ch] = false;
      pos = nl + 1;
    }
    let idx = 0;
    while (pos < text.length) {
      const nl = text.indexOf("\n", pos);
      const end = nl < 0 ? text.length : nl;
      const line = this.push({
        id: idx === 0 ? String(entry.seq) : `${entry.seq}.${idx}`,
        seq: entry.seq, idx, channel: ch, text: text.slice(pos, end),
        createdAt: entry.createdAt, open: nl < 0, version: 0, prev: this.last[ch],
      });
      this.last[ch] = line;
      changed.push(line);
      idx++;
      if (nl < 0) {
        this.open[ch] = line;
        break;
      }
      pos = nl + 1;
    }
    return changed;
  }

  /**
   * Appends a new line.
   *
   * @param {Line} line
   * @returns {Line}
   */
  push(line) {
    this.lines.push(line);
    this.byId.set(line.id, line);
    return line;
  }
}

/**
 * The ANSI style a line starts with: the style the previous line of its
 * channel ended with, as a terminal keeps it from one line to the next.
 * End styles are cached per line (and its version); a line with no
 * earlier line in the window starts with the default style.
 *
 * @param {Line & {_end?: any, _endV?: number}} line
 * @returns {import("./ansi.js").Style}
 */
export function startStyle(line) {
  // Walk back to the nearest line whose end style is known, then forward,
  // so that a long run of lines costs no deep recursion.
  /** @type {any[]} */ const todo = [];
  let p = /** @type {any} */ (line.prev);
  while (p && p._endV !== p.version) {
    todo.push(p);
    p = p.prev;
  }
  let style = p ? p._end : DEFAULT_STYLE;
  for (let k = todo.length - 1; k >= 0; k--) {
    const l = todo[k];
    style = endStyle(l.text, style);
    l._end = style;
    l._endV = l.version;
  }
  return style;
}

/**
 * Parses a line id (`1234`, `1234.2`), as in `#L1234.2`.
 *
 * @param {string} id
 * @returns {{seq: number, idx: number}|null}
 */
export function parseLineId(id) {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(id);
  if (!m) return null;
  return { seq: Number(m[1]), idx: m[2] ? Number(m[2]) : 0 };
}

/**
 * Compares two lines (or `{seq, idx}` keys) by the position of their start.
 *
 * @param {{seq: number, idx: number}} a
 * @param {{seq: number, idx: number}} b
 * @returns {number}
 */
export function compareLines(a, b) {
  return a.seq - b.seq || a.idx - b.idx;
}
