/**
 * @file The sign-in form, shown alone when the server wants a token and
 * the browser has no session.
 *
 * The token is read from a password input, sent once as JSON to
 * `POST /api/session`, and forgotten: it is never put in a URL or in
 * storage. The server answers with an HttpOnly session cookie.
 */

import { signIn } from "./api.js";
import { h, replaceChildren } from "./dom.js";

/**
 * Shows only the sign-in form in `root`; calls `onSignedIn` once the
 * server accepted a token.
 *
 * @param {HTMLElement} root
 * @param {() => void} onSignedIn
 */
export function showLogin(root, onSignedIn) {
  if (root.querySelector("form#login")) return;
  document.title = "Sign in – baa-logging";
  const input = h("input", {
    id: "token", type: "password", name: "token", autocomplete: "current-password",
    required: true, "aria-describedby": "login-error",
  });
  const error = h("p", { id: "login-error", class: "error", role: "alert" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { id: "login", class: "login" },
    h("h1", {}, "baa-logging"),
    h("label", { for: "token" }, "Access token"),
    input,
    button,
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      await signIn(input.value);
      input.value = "";
      onSignedIn();
    } catch (err) {
      error.textContent = err.status === 403
        ? `This token may not read logs: ${err.message}`
        : err.message || "sign-in failed";
      input.select();
    } finally {
      button.disabled = false;
    }
  });
  replaceChildren(root, form);
  input.focus();
}
