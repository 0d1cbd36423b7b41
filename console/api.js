// The console's only way to the API: same-origin relative fetches, the API key (when the API
// asks for one) kept in this tab's sessionStorage and sent only with those fetches.

const KEY = "vectordb.api_key";

/** An API error: the HTTP status, the gRPC status name and the server's message. */
export class ApiError extends Error {
  constructor(http, status, message) {
    super(`${status} (${http}): ${message}`);
    this.http = http;
    this.status = status;
  }
}

/** The key in use, or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY);
}

/** Keeps `key` for this tab (null forgets it). */
export function setApiKey(key) {
  if (key === null || key === "") sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, key);
}

let askKey = () => {};
/** Called when the API answers 401 (the page shows its key form). */
export function onKeyNeeded(f) {
  askKey = f;
}

/**
 * Calls the API at `path` (must be an absolute path on this origin: "/collections", never a
 * URL) and resolves with `{body, headers, ms}`; an error answer throws an ApiError.
 */
export async function call(path, { method = "GET", body, text = false } = {}) {
  if (typeof path !== "string" || !path.startsWith("/") || path.startsWith("//")) {
    throw new Error(`refusing to fetch ${path}: only paths on this origin`);
  }
  const headers = {};
  const key = apiKey();
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const t0 = performance.now();
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
  const ms = performance.now() - t0;
  if (!res.ok) {
    let status = "UNKNOWN";
    let message = res.statusText;
    try {
      const e = (await res.json()).error;
      status = e.status;
      message = e.message;
    } catch { /* not JSON */ }
    if (res.status === 401) askKey(message);
    throw new ApiError(res.status, status, message);
  }
  return { body: text ? await res.text() : await res.json(), headers: res.headers, ms };
}

/** The body of a GET. */
export async function get(path) {
  return (await call(path)).body;
}
