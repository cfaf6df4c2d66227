/**
 * @file A virtual list of fixed-height rows in a scroll container.
 *
 * Only the rows in and near the visible part are in the DOM; a spacer as
 * tall as all rows gives the scroll bar its range. Rows are built by the
 * caller's `renderRow(line)` and kept while their line's `version` and the
 * list's decoration generation stay the same.
 *
 * When the list of lines changes (a page loaded above, a group folded, a
 * channel hidden), `setLines` keeps the line at the top of the view where
 * it was, so the reader's place does not jump. It finds that line again by
 * its id: a window assembled again has new line objects for the same
 * lines. Lines appended at the end (a live run) go through `appendLines`,
 * which costs only what was appended.
 */

import { compareLines } from "./lines.js";

/** Rows rendered above and below the visible ones. */
const OVERSCAN = 40;

/** A virtual list of lines. */
export class Viewport {
  /**
   * @param {HTMLElement} scroller the scroll container (`#log`)
   * @param {(line: any) => HTMLElement} renderRow builds the row of a line
   * @param {() => void} onScroll called after each scroll (user or not)
   */
  constructor(scroller, renderRow, onScroll) {
    this.scroller = scroller;
    this.renderRow = renderRow;
    this.spacer = document.createElement("div");
    this.spacer.className = "log-spacer";
    this.rows = document.createElement("div");
    this.rows.className = "log-rows";
    this.spacer.appendChild(this.rows);
    scroller.appendChild(this.spacer);
    /** @type {any[]} */
    this.lines = [];
    /** @type {Map<string, number>} line id → index */
    this.index = new Map();
    /** @type {Map<any, HTMLElement & {_v?: number, _g?: number}>} rendered rows */
    this.rendered = new Map();
    this.generation = 0;
    this.rowHeight = measureRowHeight(scroller);
    /** the scrollTop last set by code, to tell the reader's scrolls apart */
    this.expectedTop = -1;
    this.frame = 0;
    scroller.addEventListener("scroll", () => {
      this.scheduleRender();
      onScroll();
    }, { passive: true });
    this.onResize = () => this.scheduleRender();
    window.addEventListener("resize", this.onResize);
  }

  /** Removes the listeners on the window and cancels a pending render. */
  destroy() {
    window.removeEventListener("resize", this.onResize);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  /**
   * Replaces the lines, keeping the top line of the view in place.
   *
   * @param {any[]} lines
   */
  setLines(lines) {
    const anchor = this.topAnchor();
    this.lines = lines;
    this.index = new Map();
    lines.forEach((line, i) => this.index.set(line.id, i));
    this.spacer.style.height = `${lines.length * this.rowHeight}px`;
    if (anchor) {
      let i = this.index.get(anchor.line.id);
      let offset = anchor.offset;
      if (i === undefined) {
        i = this.insertionIndex(anchor.line);
        offset = 0;
      }
      const top = i * this.rowHeight + offset;
      if (Math.abs(top - this.scroller.scrollTop) >= 1) this.setScrollTop(top);
    }
    this.render();
  }

  /**
   * Appends lines after the last one; the view stays where it is.
   *
   * @param {any[]} lines
   */
  appendLines(lines) {
    if (!lines.length) return;
    for (const line of lines) {
      this.index.set(line.id, this.lines.length);
      this.lines.push(line);
    }
    this.spacer.style.height = `${this.lines.length * this.rowHeight}px`;
    this.scheduleRender();
  }

  /**
   * The index of a line in the list, by its id.
   *
   * @param {{id: string}} line
   * @returns {number|undefined}
   */
  indexOf(line) {
    return this.index.get(line.id);
  }

  /**
   * The line at the top of the view and how far it is scrolled past.
   *
   * @returns {{line: any, offset: number}|null}
   */
  topAnchor() {
    if (!this.lines.length) return null;
    const top = this.scroller.scrollTop;
    const i = Math.min(this.lines.length - 1, Math.floor(top / this.rowHeight));
    return { line: this.lines[i], offset: top - i * this.rowHeight };
  }

  /**
   * The index of the first line that starts at or after `line`.
   *
   * @param {{seq: number, idx: number}} line
   * @returns {number}
   */
  insertionIndex(line) {
    let lo = 0;
    let hi = this.lines.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareLines(this.lines[mid], line) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Rebuilds every row on the next render (timestamps, search marks). */
  invalidate() {
    this.generation++;
    this.scheduleRender();
  }

  /** Renders on the next animation frame. */
  scheduleRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** The range of line indices in view: `[first, last)`. */
  visibleRange() {
    const top = this.scroller.scrollTop;
    const first = Math.floor(top / this.rowHeight);
    const last = Math.ceil((top + this.scroller.clientHeight) / this.rowHeight);
    return [Math.max(0, first), Math.min(this.lines.length, last)];
  }

  /** Puts the rows in and near the view in the DOM, and only those. */
  render() {
    const [first, last] = this.visibleRange();
    const from = Math.max(0, first - OVERSCAN);
    const to = Math.min(this.lines.length, last + OVERSCAN);
    const next = new Map();
    const els = [];
    for (let i = from; i < to; i++) {
      const line = this.lines[i];
      let el = this.rendered.get(line);
      if (!el || el._v !== line.version || el._g !== this.generation) {
        el = this.renderRow(line);
        el._v = line.version;
        el._g = this.generation;
      }
      next.set(line, el);
      els.push(el);
    }
    this.rendered = next;
    this.rows.style.transform = `translateY(${from * this.rowHeight}px)`;
    const children = this.rows.children;
    let same = children.length === els.length;
    for (let i = 0; same && i < els.length; i++) same = children[i] === els[i];
    if (!same) this.rows.replaceChildren(...els);
  }

  /**
   * Scrolls so that line `i` is in view.
   *
   * @param {number} i
   * @param {"center"|"start"|"nearest"} [block]
   */
  scrollToIndex(i, block = "center") {
    const h = this.rowHeight;
    const view = this.scroller.clientHeight;
    const top = this.scroller.scrollTop;
    let target;
    if (block === "start") target = i * h;
    else if (block === "nearest") {
      if (i * h < top) target = i * h;
      else if ((i + 1) * h > top + view) target = (i + 1) * h - view;
      else return;
    } else target = i * h - (view - h) / 2;
    this.setScrollTop(Math.max(0, target));
    this.render();
  }

  /** Scrolls to the end. */
  scrollToBottom() {
    this.setScrollTop(Math.max(0, this.lines.length * this.rowHeight - this.scroller.clientHeight));
    this.render();
  }

  /** Scrolls to the start. */
  scrollToTop() {
    this.setScrollTop(0);
    this.render();
  }

  /**
   * Scrolls by a number of pixels (the reader's keys).
   *
   * @param {number} dy
   */
  scrollBy(dy) {
    this.scroller.scrollTop += dy;
  }

  /**
   * Sets scrollTop, remembering it as a scroll of the code's own.
   *
   * @param {number} top
   */
  setScrollTop(top) {
    this.scroller.scrollTop = top;
    this.expectedTop = this.scroller.scrollTop;
  }

  /**
   * True when the last scroll was not the code's own (see `setScrollTop`).
   *
   * @returns {boolean}
   */
  scrolledByReader() {
    const own = Math.abs(this.scroller.scrollTop - this.expectedTop) < 2;
    return !own;
  }

  /**
   * True when the view shows the last line.
   *
   * @returns {boolean}
   */
  isAtBottom() {
    const s = this.scroller;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - this.rowHeight / 2;
  }

  /**
   * The first line in view, if any.
   *
   * @returns {any|null}
   */
  firstVisibleLine() {
    const [first] = this.visibleRange();
    return this.lines[first] ?? null;
  }
}

/**
 * The height of a row as the style sheet sets it (`--row-height`).
 *
 * @param {HTMLElement} scroller
 * @returns {number}
 */
function measureRowHeight(scroller) {
  const probe = document.createElement("div");
  probe.className = "line";
  probe.textContent = "x";
  scroller.appendChild(probe);
  const h = probe.getBoundingClientRect().height;
  probe.remove();
  return h > 0 ? h : 20;
}
