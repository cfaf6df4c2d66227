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
 * the run. Text before the first newline of a channel in such a window may
 * continue a line that started before it; that fragment is left out until
 * the earlier entries are loaded (the window is then assembled again).
 */

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
 */

/** The channels whose chunks are assembled into lines. */
const CHUNK_CHANNELS = ["stdout", "stderr"];

/** Assembles lines from entries given in seq order. */
export class LineAssembler {
  /**
   * @param {boolean} fromStart true when the first entry given is the
   *   run's first, so no channel starts in the middle of a line
   */
  constructor(fromStart) {
    /** @type {Line[]} every line, in the order of its start */
    this.lines = [];
    /** @type {Map<string, Line>} lines by id */
    this.byId = new Map();
    /** @type {Record<string, Line|null>} the unfinished line of each channel */
    this.open = { stdout: null, stderr: null };
    /** @type {Record<string, boolean>} channels still inside a fragment of an earlier line */
    this.skipping = { stdout: !fromStart, stderr: !fromStart };
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
        createdAt: entry.createdAt, open: nl < 0, version: 0,
      });
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
