/**
 * @file The DOM row of one log line:
 * `div.line[data-line][data-channel]` with an optional time gutter
 * (`span.ts`), the line link (`a.ln`, `#L{id}`), a fold button for group
 * headers, and the text (`span.text`) as styled segments.
 *
 * Text only goes in through text nodes; colours that are not palette
 * classes are set through CSSOM (`el.style.color`), which the page's CSP
 * allows, never through a `style` attribute.
 */

import { DEFAULT_STYLE, renderLine, segments, styleToCss } from "./ansi.js";
import { formatClock } from "./format.js";
import { lineMarker } from "./groups.js";
import { startStyle } from "./lines.js";

/**
 * Most cells shown in a row; the raw download has the rest. The cap is
 * applied to what the terminal shows, after rendering the whole line, so a
 * progress bar redrawn over 20,000 characters shows its final state.
 */
const MAX_SHOWN_CHARS = 20_000;
// Control characters: a line without any shows its raw text as is.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

/**
 * How a row is decorated beyond its text.
 *
 * @typedef {object} RowOptions
 * @property {boolean} timestamps show the time gutter
 * @property {boolean} highlight the line a `#L` link points at
 * @property {boolean} currentMatch the search match being looked at
 * @property {Array<[number, number]>} spans search matches in the raw text
 * @property {boolean|null} collapsed for a group header: whether it is folded
 * @property {(line: any) => void} onFold called by the fold button
 */

/**
 * Builds the row of a line.
 *
 * @param {import("./lines.js").Line} line
 * @param {RowOptions} opts
 * @returns {HTMLElement}
 */
export function renderRow(line, opts) {
  const row = document.createElement("div");
  row.className = "line";
  row.dataset.line = line.id;
  row.dataset.channel = line.channel;
  if (line.channel === "worker") {
    row.classList.add("worker", `level-${line.level || "info"}`);
  }
  if (opts.highlight) row.classList.add("highlight");
  if (opts.currentMatch) row.classList.add("current-match");

  if (opts.timestamps) {
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = formatClock(line.createdAt);
    row.appendChild(ts);
  }
  const ln = document.createElement("a");
  ln.className = "ln";
  ln.href = `#L${line.id}`;
  ln.textContent = line.id;
  row.appendChild(ln);

  const text = document.createElement("span");
  text.className = "text";
  const marker = lineMarker(line);
  if (marker.kind === "start") {
    row.classList.add("group-header");
    const fold = document.createElement("button");
    fold.type = "button";
    fold.className = "fold";
    fold.setAttribute("aria-expanded", opts.collapsed ? "false" : "true");
    fold.setAttribute("aria-label", opts.collapsed ? "Expand group" : "Collapse group");
    fold.addEventListener("click", () => opts.onFold(line));
    row.appendChild(fold);
    if (opts.collapsed) row.classList.add("collapsed");
    text.textContent = marker.name || "";
    row.appendChild(text);
    return row;
  }
  fillText(text, line.text, opts.spans, line.channel === "worker" ? DEFAULT_STYLE : startStyle(line));
  row.appendChild(text);
  return row;
}

/**
 * Puts the rendered, styled text of a raw line into `el`.
 *
 * @param {HTMLElement} el
 * @param {string} raw
 * @param {Array<[number, number]>} spans search matches in `raw`
 * @param {import("./ansi.js").Style} start the style the line starts with
 */
function fillText(el, raw, spans, start) {
  // Plain text has one cell per character (or pair): cutting it first
  // gives the same cells for less work.
  const plain = !CONTROL.test(raw);
  const rendered = renderLine(plain && raw.length > MAX_SHOWN_CHARS * 2 ? raw.slice(0, MAX_SHOWN_CHARS * 2) : raw, start);
  const cells = plain ? rawCells(raw, rendered.chars.length) : rendered.chars.length;
  const cut = Math.max(0, cells - MAX_SHOWN_CHARS);
  for (const seg of segments(rendered, spans, MAX_SHOWN_CHARS)) {
    const css = styleToCss(seg.style);
    if (!css.classes.length && !css.color && !css.background && !seg.match) {
      el.appendChild(document.createTextNode(seg.text));
      continue;
    }
    const span = document.createElement(seg.match ? "mark" : "span");
    if (seg.match) css.classes.push("match");
    if (css.classes.length) span.className = css.classes.join(" ");
    if (css.color) span.style.color = css.color;
    if (css.background) span.style.backgroundColor = css.background;
    span.textContent = seg.text;
    el.appendChild(span);
  }
  if (cut) {
    const more = document.createElement("span");
    more.className = "cut";
    more.textContent = ` … ${cut.toLocaleString("en-US")} more characters (see the raw log)`;
    el.appendChild(more);
  }
}

/**
 * The cells of a plain line: its code points.
 *
 * @param {string} raw
 * @param {number} counted cells already known (the whole line when not cut)
 * @returns {number}
 */
function rawCells(raw, counted) {
  if (raw.length <= MAX_SHOWN_CHARS * 2) return counted;
  let pairs = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) { pairs++; i++; }
  }
  return raw.length - pairs;
}
