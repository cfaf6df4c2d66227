/**
 * @file The page's entry point: checks the session, then shows the view
 * that `location.pathname` names.
 *
 * - `/` – the run list (`run_list.js`);
 * - `/runs/{taskId}/{runId}` – a run's page (`run_page.js`).
 *
 * A view is a function that fills the root element and returns a function
 * that stops it (timers, streams, listeners). When the server wants a
 * token and there is no session, or any call answers 401, the view is
 * stopped and only the sign-in form is shown; after signing in, the view
 * starts again.
 */

import { getSession, onUnauthenticated, signOut } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { showLogin } from "./login.js";
import { showRunList } from "./run_list.js";
import { showRunPage } from "./run_page.js";

const root = /** @type {HTMLElement} */ (document.getElementById("app"));

/** @type {(() => void) | null} stops the current view */
let stopView = null;

/** How often an open page asks for its session, which renews the cookie. */
const SESSION_RENEW_MS = 5 * 60 * 1000;

/** The renewal timer, while signed in. */
let renewal = 0;

/**
 * Shows who is signed in, with a button that signs out, and renews the
 * session while the page is open; removes both when not signed in.
 *
 * @param {{required: boolean, signedIn: boolean, token: string|null}|null} session
 */
function showSession(session) {
  document.getElementById("session")?.remove();
  clearInterval(renewal);
  if (!session || !session.required || !session.signedIn) return;
  renewal = window.setInterval(async () => {
    let now;
    try {
      now = await getSession();
    } catch {
      return; // a 401 shows the form by itself; other errors: next time
    }
    // The server answers 200 with `signedIn: false` once the session is
    // over (expired, or its token removed): only the form may show then.
    if (now && now.required && !now.signedIn) requireLogin();
  }, SESSION_RENEW_MS);
  const button = h("button", {
    type: "button",
    onclick: async () => {
      clearInterval(renewal);
      try {
        await signOut();
      } finally {
        requireLogin();
      }
    },
  }, "Sign out");
  document.body.appendChild(h("div", { id: "session" },
    h("span", { class: "hint" }, `signed in as ${session.token || "?"}`), " ", button));
}

/**
 * The view for a path, with its arguments.
 *
 * @param {string} pathname
 * @returns {{kind: "list"} | {kind: "run", taskId: string, runId: string} | {kind: "none"}}
 */
export function route(pathname) {
  if (pathname === "/" || pathname === "") return { kind: "list" };
  const m = /^\/runs\/([^/]+)\/([^/]+)\/?$/.exec(pathname);
  if (m) {
    try {
      return { kind: "run", taskId: decodeURIComponent(m[1]), runId: decodeURIComponent(m[2]) };
    } catch {
      return { kind: "none" };
    }
  }
  return { kind: "none" };
}

/** Stops the current view and shows the sign-in form. */
function requireLogin() {
  showSession(null);
  if (stopView) {
    stopView();
    stopView = null;
  }
  showLogin(root, start);
}

/** Starts the view of the current location, after checking the session. */
async function start() {
  if (stopView) {
    stopView();
    stopView = null;
  }
  try {
    const session = await getSession();
    if (session && session.required && !session.signedIn) {
      requireLogin();
      return;
    }
    showSession(session);
  } catch (err) {
    if (err.code === "UNAUTHENTICATED") return; // the form is shown
    // An older server without /api/session: go on, calls will tell.
  }
  const r = route(location.pathname);
  if (r.kind === "list") stopView = showRunList(root);
  else if (r.kind === "run") stopView = showRunPage(root, r.taskId, r.runId);
  else {
    document.title = "Not found – baa-logging";
    replaceChildren(root, h("div", { class: "notice" },
      h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "All runs"))));
  }
}

onUnauthenticated(requireLogin);
start();
