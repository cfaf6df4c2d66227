/**
 * @file Small helpers for building DOM nodes safely.
 *
 * Text only ever enters the document through `createTextNode`, never
 * through markup, so untrusted strings (log text, run metadata) cannot
 * create elements or run script.
 */

/**
 * Creates an element with attributes and children.
 *
 * `attrs` keys are attribute names, except `class` (a string or a list) and
 * `on*` keys, which must be functions and become event listeners. Strings
 * among `children` become text nodes; `null`/`undefined`/`false` are skipped.
 *
 * @param {string} tag element name
 * @param {Record<string, any>} [attrs]
 * @param {...(Node|string|number|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

/**
 * Appends children (nodes or strings, as text) to `parent`.
 *
 * @param {Node} parent
 * @param {Array<Node|string|number|null|undefined|false>} children
 */
export function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces all children of `parent`.
 *
 * @param {Node} parent
 * @param {...(Node|string|null|undefined|false)} children
 */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

/**
 * True when a keyboard event comes from a place where typing goes
 * (inputs, selects, text areas), so page shortcuts must not act on it.
 *
 * @param {KeyboardEvent} event
 * @returns {boolean}
 */
export function isTyping(event) {
  const t = /** @type {HTMLElement|null} */ (event.target);
  if (!t || !t.tagName) return false;
  if (t.isContentEditable) return true;
  if (t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  if (t.tagName === "INPUT") {
    const type = /** @type {HTMLInputElement} */ (t).type;
    return !["checkbox", "radio", "button", "submit", "reset", "range"].includes(type);
  }
  return false;
}

/** The keys a range slider moves by. */
const SLIDER_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];

/**
 * True when the focused form control keeps this key for itself, so that
 * page shortcuts must leave it: text fields, selects and text areas keep
 * every key, the position slider its arrows, Home/End and PageUp/PageDown,
 * and checkboxes and buttons Space and Enter. Other keys (a letter after
 * ticking a checkbox) still reach the page's shortcuts.
 *
 * @param {KeyboardEvent} event
 * @returns {boolean}
 */
export function isFormControl(event) {
  const t = /** @type {HTMLElement|null} */ (event.target);
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  const activates = event.key === " " || event.key === "Enter";
  if (t.tagName === "BUTTON") return activates;
  if (t.tagName !== "INPUT") return false;
  const type = /** @type {HTMLInputElement} */ (t).type;
  if (["checkbox", "radio", "button", "submit", "reset"].includes(type)) return activates;
  if (type === "range") return SLIDER_KEYS.includes(event.key);
  return true;
}

/**
 * True when a key event carries a modifier that page shortcuts leave to
 * the browser (Ctrl, Alt, Meta).
 *
 * @param {KeyboardEvent} event
 * @returns {boolean}
 */
export function hasModifier(event) {
  return event.ctrlKey || event.altKey || event.metaKey;
}
