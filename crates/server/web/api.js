/**
 * @file Calls to the server's JSON API.
 *
 * Every error answer is `{"error", "code"}` with an HTTP status; it becomes
 * an `ApiError`. A 401 anywhere means the session is missing or expired:
 * the handler set with `onUnauthenticated` (the login form) is called, and
 * the call fails with an `ApiError` whose `code` is `UNAUTHENTICATED`.
 */

/** An error answer of the API. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server could not be reached)
   * @param {string} code gRPC code name (`NOT_FOUND`, …)
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** @type {() => void} */
let unauthenticated = () => {};

/**
 * Sets what happens when a call answers 401.
 *
 * @param {() => void} handler
 */
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

/**
 * The path of a run's API resource, ids percent-encoded.
 *
 * @param {string} taskId
 * @param {string} runId
 * @param {string} [rest] e.g. `/entries`
 * @returns {string}
 */
export function runPath(taskId, runId, rest = "") {
  return `/api/runs/${encodeURIComponent(taskId)}/${encodeURIComponent(runId)}${rest}`;
}

/**
 * A query string from parameters; arrays repeat the key, empty values are
 * left out.
 *
 * @param {Record<string, string|number|boolean|Array<string>|null|undefined>} params
 * @returns {string} `?a=1&b=2`, or empty
 */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "" || value === false) continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(key, v));
    else q.append(key, value === true ? "1" : String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/**
 * Fetches `path` and parses its JSON body.
 *
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<any>} the parsed body, or null for an empty one
 * @throws {ApiError}
 */
export async function request(path, init = {}) {
  let response;
  try {
    response = await fetch(path, {
      credentials: "same-origin",
      ...init,
      headers: { Accept: "application/json", ...(init.headers || {}) },
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "UNAVAILABLE", "the server cannot be reached");
  }
  const body = await response.text();
  let json = null;
  if (body) {
    try {
      json = JSON.parse(body);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const code = (json && json.code) || (response.status === 401 ? "UNAUTHENTICATED" : `HTTP_${response.status}`);
    const message = (json && json.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401) unauthenticated();
    throw new ApiError(response.status, code, message);
  }
  return json;
}

/**
 * GETs a JSON resource.
 *
 * @param {string} path
 * @param {AbortSignal} [signal]
 * @returns {Promise<any>}
 */
export function getJson(path, signal) {
  return request(path, { signal });
}

/**
 * The session state: `{required, signedIn, token, serverVersion}`.
 *
 * @returns {Promise<{required: boolean, signedIn: boolean, token: string|null, serverVersion: string}>}
 */
export function getSession() {
  return request("/api/session");
}

/**
 * Signs in with a token; the server answers with a session cookie. The
 * token goes in the body only, never in a URL.
 *
 * @param {string} token
 * @returns {Promise<void>}
 * @throws {ApiError} 401 for an unknown token, 403 without the read scope
 */
export async function signIn(token) {
  let response;
  try {
    response = await fetch("/api/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
    });
  } catch {
    throw new ApiError(0, "UNAVAILABLE", "the server cannot be reached");
  }
  if (response.ok) return;
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  throw new ApiError(response.status, (json && json.code) || `HTTP_${response.status}`,
    (json && json.error) || `${response.status} ${response.statusText}`);
}

/**
 * Signs out (clears the session cookie).
 *
 * @returns {Promise<void>}
 */
export async function signOut() {
  await request("/api/session", { method: "DELETE" });
}
