/**
 * @file Foldable groups of lines, as CI systems mark them in output.
 *
 * - GitHub Actions: `::group::NAME` starts a group (collapsed) that runs to
 *   `::endgroup::`; the end marker itself is not shown. The runner's own
 *   `##[group]NAME` / `##[endgroup]` forms are taken too.
 * - Buildkite: `--- NAME` (collapsed), `+++ NAME` (expanded) and
 *   `~~~ NAME` (collapsed) start a group that runs until the next header.
 *
 * Groups do not nest: a header ends the group before it. The markers are
 * looked for in the text the line shows (after ANSI rendering) of the
 * first MARKER_CHARS characters of the raw line, so a huge line costs no
 * more than a short one.
 */

import { plainText } from "./ansi.js";

/**
 * What a line is for grouping.
 *
 * @typedef {object} Marker
 * @property {"start"|"end"|null} kind
 * @property {string} [name] the group's name, for a start
 * @property {boolean} [collapsed] whether the group starts collapsed
 */

const NONE = Object.freeze({ kind: null });
const GHA_START = /^(?:::group::|##\[group\])(.*)$/;
const GHA_END = /^(?:::endgroup::|##\[endgroup\])\s*$/;
const BUILDKITE = /^(---|\+\+\+|~~~) (.*)$/;
/** How much of a raw line is looked at for a marker. */
const MARKER_CHARS = 1024;

/**
 * The group marker a line's text holds, if any.
 *
 * @param {string} raw the line's raw text
 * @returns {Marker}
 */
export function markerOf(raw) {
  // Cheap test first: most lines hold no marker at all.
  const head = raw.length > MARKER_CHARS ? raw.slice(0, MARKER_CHARS) : raw;
  if (!/^(?:\x1b|::|##|---|\+\+\+|~~~)|[\x1b\r]/.test(head)) return NONE;
  const text = plainText(head).replace(/\r$/, "");
  let m = GHA_START.exec(text);
  if (m) return { kind: "start", name: m[1].trim(), collapsed: true };
  if (GHA_END.test(text)) return { kind: "end" };
  m = BUILDKITE.exec(text);
  if (m) return { kind: "start", name: m[2].trim(), collapsed: m[1] !== "+++" };
  return NONE;
}

/**
 * The cached marker of a line, recomputed when its text changed.
 *
 * @param {import("./lines.js").Line & {marker?: Marker, markerVersion?: number}} line
 * @returns {Marker}
 */
export function lineMarker(line) {
  if (line.channel === "worker") return NONE;
  if (line.markerVersion !== line.version) {
    line.marker = markerOf(line.text);
    line.markerVersion = line.version;
  }
  return /** @type {Marker} */ (line.marker);
}

/** Which groups are folded: the reader's choice, else the header's default. */
export class FoldState {
  constructor() {
    /** @type {Map<string, boolean>} header line id → collapsed */
    this.choices = new Map();
    /** @type {import("./lines.js").Line|null} the open last group of a live run */
    this.running = null;
  }

  /**
   * Whether the group of `header` is collapsed.
   *
   * @param {import("./lines.js").Line} header
   * @returns {boolean}
   */
  isCollapsed(header) {
    const choice = this.choices.get(header.id);
    if (choice !== undefined) return choice;
    if (header === this.running) return false;
    return Boolean(lineMarker(header).collapsed);
  }

  /**
   * Folds or unfolds the group of `header`.
   *
   * @param {import("./lines.js").Line} header
   * @param {boolean} collapsed
   */
  set(header, collapsed) {
    this.choices.set(header.id, collapsed);
  }
}

/**
 * The lines to show, in order: those of the chosen channels, without end
 * markers and without the lines of collapsed groups. Sets `line.header`
 * (the header line of the group a line is in, or null) on every line.
 *
 * A group whose header is hidden by the channel filter is shown open, as
 * nothing would be there to unfold it. On a live run, the last group, if
 * nothing ended it yet, is open unless the reader folded it: it is the
 * step running now, as CI pages show it.
 *
 * @param {import("./lines.js").Line[]} lines
 * @param {Set<string>} channels
 * @param {FoldState} folds
 * @param {boolean} [live] the run may still write
 * @returns {import("./lines.js").Line[]}
 */
export function visibleLines(lines, channels, folds, live = false) {
  const running = live ? runningHeader(lines) : null;
  folds.running = running;
  const out = [];
  let header = null;
  let hidden = false;
  for (const line of /** @type {any[]} */ (lines)) {
    const marker = lineMarker(line);
    if (marker.kind === "start") {
      header = line;
      line.header = null;
      hidden = channels.has(line.channel) && folds.isCollapsed(line);
      if (channels.has(line.channel)) out.push(line);
      continue;
    }
    if (marker.kind === "end") {
      line.header = null;
      header = null;
      hidden = false;
      continue;
    }
    line.header = header;
    if (hidden || !channels.has(line.channel)) continue;
    out.push(line);
  }
  return out;
}

/**
 * The header of the last group if no end marker follows it.
 *
 * @param {import("./lines.js").Line[]} lines
 * @returns {import("./lines.js").Line|null}
 */
function runningHeader(lines) {
  for (let i = lines.length - 1; i >= 0; i--) {
    const kind = lineMarker(lines[i]).kind;
    if (kind === "end") return null;
    if (kind === "start") return lines[i];
  }
  return null;
}

/**
 * The visible lines of a growing list of lines, kept up to date as lines
 * are appended (a live run) without going over all of them again: lines
 * that hold no marker only extend the list. A new or changed marker, a
 * channel or fold change, or another list of lines needs `build`.
 */
export class VisibleList {
  constructor() {
    /** @type {any[]} the lines of the last build */
    this.source = [];
    /** how many of `source` were gone over */
    this.count = 0;
    /** @type {any} the group header the last line is under */
    this.header = null;
    /** whether the lines under `header` are hidden */
    this.hidden = false;
    /** whether the last build was for a live run */
    this.live = false;
  }

  /**
   * Computes the visible lines of `lines` from the start (`visibleLines`).
   *
   * @param {import("./lines.js").Line[]} lines
   * @param {Set<string>} channels
   * @param {FoldState} folds
   * @param {boolean} live
   * @returns {import("./lines.js").Line[]}
   */
  build(lines, channels, folds, live) {
    const out = visibleLines(lines, channels, folds, live);
    this.source = lines;
    this.count = lines.length;
    this.live = live;
    const last = /** @type {any} */ (lines[lines.length - 1]);
    this.header = last ? (lineMarker(last).kind === "start" ? last : last.header ?? null) : null;
    this.hidden = Boolean(this.header) && channels.has(this.header.channel) &&
      folds.isCollapsed(this.header);
    return out;
  }

  /**
   * The lines to add to the visible ones after lines were appended to the
   * same list and some earlier ones grew, or null when only a `build`
   * can tell (a marker appeared or changed).
   *
   * @param {import("./lines.js").Line[]} lines the list of the last build, grown
   * @param {import("./lines.js").Line[]} changed lines whose text changed
   * @param {Set<string>} channels
   * @param {boolean} live
   * @returns {import("./lines.js").Line[]|null}
   */
  append(lines, changed, channels, live) {
    if (lines !== this.source || live !== this.live) return null;
    for (const line of /** @type {any[]} */ (changed)) {
      if (line.channel === "worker") continue;
      const before = line.markerVersion === undefined ? NONE : line.marker;
      const after = lineMarker(line);
      if (before.kind !== after.kind || before.collapsed !== after.collapsed) return null;
    }
    const out = [];
    for (let i = this.count; i < lines.length; i++) {
      const line = /** @type {any} */ (lines[i]);
      if (lineMarker(line).kind !== null) return null;
      line.header = this.header;
      if (!this.hidden && channels.has(line.channel)) out.push(line);
    }
    this.count = lines.length;
    return out;
  }
}
