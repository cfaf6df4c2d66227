/**
 * @file Terminal rendering of one log line: ANSI SGR styles, carriage
 * returns, backspaces and line erases, as a terminal would show the line
 * once everything in it was written.
 *
 * The result is a list of cells (one per character) with a style and the
 * index in the raw text that wrote it, so that search spans (offsets in the
 * raw text) can be marked on what is shown. Nothing here builds markup: the
 * caller turns segments into text nodes.
 *
 * Escape sequences other than SGR (`ESC[…m`), erase in line (`ESC[…K`) and
 * the horizontal cursor moves (`ESC[…G`, `ESC[…C`, `ESC[…D`) are dropped
 * whole, as are OSC/DCS strings (7-bit `ESC]` and 8-bit `0x9d` forms) and
 * other control characters, C1 ones included, so none of them is ever
 * shown raw. Cursor moves take their first parameter only and never move
 * past MAX_COL, so a hostile `ESC[1000000000C` costs nothing.
 *
 * A line may start with a style other than the default: the SGR state a
 * terminal kept from the line before (`endStyle` computes it).
 */

/**
 * A text style. Objects are immutable: a style change makes a new one, so
 * cells share them and `===` tells whether two cells look the same.
 *
 * @typedef {object} Style
 * @property {number|string|null} fg palette index 0–15 (CSS class), a CSS
 *   colour string (256-colour and truecolor), or null for the default
 * @property {number|string|null} bg as `fg`, for the background
 * @property {boolean} bold
 * @property {boolean} dim
 * @property {boolean} italic
 * @property {boolean} underline
 * @property {boolean} inverse
 * @property {boolean} strike
 */

/** The style of text with no SGR applied. @type {Style} */
export const DEFAULT_STYLE = Object.freeze({
  fg: null, bg: null, bold: false, dim: false, italic: false,
  underline: false, inverse: false, strike: false,
});

/**
 * One run of equally styled characters.
 *
 * @typedef {object} Segment
 * @property {string} text
 * @property {Style} style
 * @property {boolean} match true when it lies in a search span
 */

/**
 * A rendered line: what the terminal shows, cell by cell.
 *
 * @typedef {object} Rendered
 * @property {string[]} chars the character of each cell
 * @property {Style[]} styles the style of each cell
 * @property {number[]} src the raw-text index (UTF-16) that wrote each cell
 * @property {string} plain the shown text, without styles
 */

// Characters that need the terminal model; a line without any is shown as is.
const SPECIAL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

/** The rightmost column a cursor move may reach (the cells shown are capped lower). */
export const MAX_COL = 20_000;

/**
 * The first numeric parameter of a control sequence (`5` of `5;1`), or
 * `dflt` when it is missing or zero-length; never NaN.
 *
 * @param {string} params
 * @param {number} dflt
 * @returns {number}
 */
function firstParam(params, dflt) {
  const first = params.split(/[;:]/, 1)[0];
  if (!first) return dflt;
  const n = Number(first);
  return Number.isFinite(n) ? n : dflt;
}

/**
 * Renders a raw line (without its newline) as a terminal shows it.
 *
 * @param {string} raw
 * @param {Style} [start] the style in effect when the line starts
 * @returns {Rendered}
 */
export function renderLine(raw, start = DEFAULT_STYLE) {
  if (!SPECIAL.test(raw)) return plainRendered(raw, start);
  /** @type {string[]} */ const chars = [];
  /** @type {Style[]} */ const styles = [];
  /** @type {number[]} */ const src = [];
  let style = start;
  let col = 0;
  const n = raw.length;
  let i = 0;
  /** Puts `ch` (written at raw index `at`) at the cursor. */
  const put = (ch, at) => {
    while (chars.length < col) { chars.push(" "); styles.push(DEFAULT_STYLE); src.push(-1); }
    chars[col] = ch; styles[col] = style; src[col] = at;
    col++;
  };
  while (i < n) {
    const c = raw.charCodeAt(i);
    if (c === 0x1b) {
      i = escape(raw, i + 1, (final, params) => {
        switch (final) {
          case "m": style = applySgr(style, params); break;
          case "K": {
            const mode = Number(params.split(/[;:]/)[0] || 0);
            if (mode === 0) {
              chars.length = Math.min(chars.length, col);
              styles.length = chars.length; src.length = chars.length;
            } else if (mode === 1) {
              for (let k = 0; k <= col && k < chars.length; k++) { chars[k] = " "; styles[k] = DEFAULT_STYLE; src[k] = -1; }
            } else if (mode === 2) {
              chars.length = 0; styles.length = 0; src.length = 0;
            }
            break;
          }
          case "G": col = Math.min(MAX_COL, Math.max(0, firstParam(params, 1) - 1)); break;
          case "C": col = Math.min(MAX_COL, col + Math.max(1, firstParam(params, 1))); break;
          case "D": col = Math.max(0, col - Math.max(1, firstParam(params, 1))); break;
          default: break; // other sequences are dropped
        }
      });
      continue;
    }
    if (c === 0x9b) { // C1 CSI: drop its sequence
      i = csiEnd(raw, i + 1, () => {});
      continue;
    }
    if (c === 0x9d || c === 0x90 || c === 0x98 || c === 0x9e || c === 0x9f) {
      // C1 OSC, DCS, SOS, PM, APC: drop the string up to its terminator.
      i = stringEnd(raw, i + 1);
      continue;
    }
    if (c >= 0x80 && c <= 0x9f) { i++; continue; } // other C1 controls
    if (c === 0x0d) { col = 0; i++; continue; }
    if (c === 0x08) { col = Math.max(0, col - 1); i++; continue; }
    if (c === 0x09) { put("\t", i); i++; continue; }
    if (c < 0x20 || c === 0x7f) { i++; continue; }
    // One cell per code point, so a surrogate pair is repainted whole.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      put(raw.slice(i, i + 2), i);
      i += 2;
    } else {
      put(raw[i], i);
      i++;
    }
  }
  return { chars, styles, src, plain: chars.join("") };
}

/**
 * A rendered line for text with no control characters at all.
 *
 * @param {string} raw
 * @param {Style} style the style of every cell
 * @returns {Rendered}
 */
function plainRendered(raw, style) {
  const chars = [];
  const src = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < raw.length) {
      chars.push(raw.slice(i, i + 2)); src.push(i); i++;
    } else {
      chars.push(raw[i]); src.push(i);
    }
  }
  return { chars, styles: new Array(chars.length).fill(style), src, plain: raw };
}

// An SGR sequence, as `renderLine` applies it (7-bit CSI only).
const SGR = /\x1b\[([0-9;:]*)m/g;

/**
 * The SGR style in effect after a raw line, given the one before it: what
 * a terminal carries over to the next line. Only SGR sequences count, so
 * this is a quick scan, not a render.
 *
 * @param {string} raw
 * @param {Style} [start]
 * @returns {Style}
 */
export function endStyle(raw, start = DEFAULT_STYLE) {
  if (raw.indexOf("\x1b") < 0) return start;
  let style = start;
  SGR.lastIndex = 0;
  for (let m = SGR.exec(raw); m; m = SGR.exec(raw)) style = applySgr(style, m[1]);
  return style;
}

/**
 * The text a line shows, without styles: quicker than `renderLine` when
 * only the text is needed (group headers).
 *
 * @param {string} raw
 * @returns {string}
 */
export function plainText(raw) {
  return SPECIAL.test(raw) ? renderLine(raw).plain : raw;
}

/**
 * Skips the escape sequence whose body starts at `i` (just after ESC);
 * calls `onCsi(final, params)` for a control sequence.
 *
 * @param {string} raw
 * @param {number} i
 * @param {(final: string, params: string) => void} onCsi
 * @returns {number} the index just after the sequence
 */
function escape(raw, i, onCsi) {
  if (i >= raw.length) return i;
  const c = raw[i];
  if (c === "[") return csiEnd(raw, i + 1, onCsi);
  // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \).
  if (c === "]" || c === "P" || c === "X" || c === "^" || c === "_") return stringEnd(raw, i + 1);
  // nF sequences: intermediates 0x20–0x2F, then a final byte (`ESC ( B`).
  let k = i;
  while (k < raw.length && raw.charCodeAt(k) >= 0x20 && raw.charCodeAt(k) <= 0x2f) k++;
  return Math.min(raw.length, k + 1);
}

/**
 * Skips a control string (OSC, DCS, …) whose body starts at `i`: up to
 * BEL, 8-bit ST (0x9c) or ESC \\; an unterminated one runs to the end.
 *
 * @param {string} raw
 * @param {number} i
 * @returns {number} the index just after it
 */
function stringEnd(raw, i) {
  for (let k = i; k < raw.length; k++) {
    const ch = raw.charCodeAt(k);
    if (ch === 0x07 || ch === 0x9c) return k + 1;
    if (ch === 0x1b && raw[k + 1] === "\\") return k + 2;
  }
  return raw.length;
}

/**
 * Skips a control sequence whose parameters start at `i`.
 *
 * @param {string} raw
 * @param {number} i
 * @param {(final: string, params: string) => void} onCsi
 * @returns {number} the index just after it
 */
function csiEnd(raw, i, onCsi) {
  let k = i;
  while (k < raw.length) {
    const ch = raw.charCodeAt(k);
    if (ch >= 0x40 && ch <= 0x7e) {
      const params = raw.slice(i, k);
      // Private sequences (`ESC[?25l`) and ones with intermediates are dropped.
      if (/^[0-9;:]*$/.test(params)) onCsi(raw[k], params);
      return k + 1;
    }
    if (ch < 0x20 || ch > 0x3f && ch < 0x40) return k; // malformed: stop here
    k++;
  }
  return k;
}

/**
 * Applies SGR parameters (`1;31`, `38;5;208`, `38;2;1;2;3`, `38:2::1:2:3`)
 * to a style.
 *
 * @param {Style} style
 * @param {string} params
 * @returns {Style}
 */
export function applySgr(style, params) {
  const groups = params === "" ? ["0"] : params.split(";");
  const s = { ...style };
  for (let g = 0; g < groups.length; g++) {
    const sub = groups[g].split(":");
    const code = Number(sub[0] || 0);
    if (code === 38 || code === 48 || code === 58) {
      let color = null;
      if (sub.length > 1) {
        // Colon form: 38:5:n or 38:2:[cs]:r:g:b
        if (sub[1] === "5") color = color256(Number(sub[2]));
        else if (sub[1] === "2") {
          const v = sub.length >= 6 ? sub.slice(3, 6) : sub.slice(2, 5);
          color = rgb(v.map(Number));
        }
      } else if (groups[g + 1] === "5") {
        color = color256(Number(groups[g + 2]));
        g += 2;
      } else if (groups[g + 1] === "2") {
        color = rgb(groups.slice(g + 2, g + 5).map(Number));
        g += 4;
      }
      if (code === 38) s.fg = color;
      else if (code === 48) s.bg = color;
      continue;
    }
    switch (true) {
      case code === 0: Object.assign(s, DEFAULT_STYLE); break;
      case code === 1: s.bold = true; break;
      case code === 2: s.dim = true; break;
      case code === 3: s.italic = true; break;
      case code === 4: s.underline = true; break;
      case code === 7: s.inverse = true; break;
      case code === 9: s.strike = true; break;
      case code === 21: s.underline = true; break;
      case code === 22: s.bold = false; s.dim = false; break;
      case code === 23: s.italic = false; break;
      case code === 24: s.underline = false; break;
      case code === 27: s.inverse = false; break;
      case code === 29: s.strike = false; break;
      case code >= 30 && code <= 37: s.fg = code - 30; break;
      case code === 39: s.fg = null; break;
      case code >= 40 && code <= 47: s.bg = code - 40; break;
      case code === 49: s.bg = null; break;
      case code >= 90 && code <= 97: s.fg = code - 90 + 8; break;
      case code >= 100 && code <= 107: s.bg = code - 100 + 8; break;
      default: break;
    }
  }
  for (const key of Object.keys(s)) {
    if (s[key] !== style[key]) return Object.freeze(s);
  }
  return style;
}

/**
 * The CSS colour of a 256-colour palette index; indices below 16 stay
 * numbers so that the theme's palette classes apply.
 *
 * @param {number} n
 * @returns {number|string|null}
 */
export function color256(n) {
  if (!Number.isInteger(n) || n < 0 || n > 255) return null;
  if (n < 16) return n;
  if (n < 232) {
    const v = n - 16;
    const level = (x) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${level(Math.floor(v / 36))}, ${level(Math.floor(v / 6) % 6)}, ${level(v % 6)})`;
  }
  const grey = 8 + (n - 232) * 10;
  return `rgb(${grey}, ${grey}, ${grey})`;
}

/**
 * A CSS `rgb()` colour from three 0–255 components, or null if malformed.
 *
 * @param {number[]} v
 * @returns {string|null}
 */
function rgb(v) {
  if (v.length !== 3 || v.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return null;
  return `rgb(${v[0]}, ${v[1]}, ${v[2]})`;
}

/**
 * Groups the cells of a rendered line into segments of equal style and
 * match state.
 *
 * @param {Rendered} r
 * @param {Array<[number, number]>} [spans] raw-text ranges to mark as matches
 * @param {number} [maxCells] the cells to take, from the left (all by default)
 * @returns {Segment[]}
 */
export function segments(r, spans = [], maxCells = Infinity) {
  /** @type {Segment[]} */ const out = [];
  // Spans sorted by start, with a running maximum of their ends: a cell is
  // in a span when the last span starting at or before it reaches past it.
  // A binary search per cell, as cells are not in raw order after a `\r`.
  const sorted = spans.slice().sort((x, y) => x[0] - y[0]);
  const starts = sorted.map((x) => x[0]);
  const reach = [];
  let maxEnd = -1;
  for (const [, b] of sorted) reach.push(maxEnd = Math.max(maxEnd, b));
  const inSpan = (at) => {
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && at < reach[lo - 1];
  };
  let cur = null;
  const n = Math.min(r.chars.length, maxCells);
  for (let k = 0; k < n; k++) {
    const style = r.styles[k];
    const match = sorted.length > 0 && r.src[k] >= 0 && inSpan(r.src[k]);
    if (cur && cur.style === style && cur.match === match) {
      cur.text += r.chars[k];
    } else {
      cur = { text: r.chars[k], style, match };
      out.push(cur);
    }
  }
  return out;
}

/**
 * CSS classes and inline (CSSOM) colours for a style. Palette colours are
 * classes (`fg-1`, `bg-12`), so each theme picks readable values; other
 * colours are CSS strings to set with `el.style`.
 *
 * @param {Style} s
 * @returns {{classes: string[], color: string|null, background: string|null}}
 */
export function styleToCss(s) {
  const classes = [];
  let fg = s.fg;
  let bg = s.bg;
  let fgInv = false;
  let bgInv = false;
  if (s.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) fgInv = true;
    if (bg === null) bgInv = true;
  }
  let color = null;
  let background = null;
  if (typeof fg === "number") classes.push(`fg-${fg}`);
  else if (typeof fg === "string") color = fg;
  else if (fgInv) classes.push("fg-inverse");
  if (typeof bg === "number") classes.push(`bg-${bg}`);
  else if (typeof bg === "string") background = bg;
  else if (bgInv) classes.push("bg-inverse");
  if (s.bold) classes.push("bold");
  if (s.dim) classes.push("dim");
  if (s.italic) classes.push("italic");
  if (s.underline) classes.push("underline");
  if (s.strike) classes.push("strike");
  return { classes, color, background };
}
