// The portal's only way to the platform: the gateway's JSON door, same origin.
//
// The session lives in HttpOnly cookies the door sets and this script never
// sees; a state change carries the CSRF token in a header. Requests name
// resources by their opaque ids; anything about the patient's health travels
// in request bodies, never in a query string.

import { ROUTES, SESSION } from "./routes.js";

export class ApiError extends Error {
  constructor(status, code, reason, message, fields = {}) {
    super(message || reason || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.fields = fields;
  }
}

let csrfToken = "";

export function setCsrfToken(token) {
  csrfToken = token || "";
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function currentCsrf() {
  return csrfToken || (SESSION.csrfCookie ? readCookie(SESSION.csrfCookie) : "");
}

/** A fresh idempotency key (AIP-155 request_id) for each user action. */
export function requestId() {
  return crypto.randomUUID();
}

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store", redirect: "error" };
  if (method !== "GET" && method !== "HEAD") {
    headers[SESSION.csrfHeader] = currentCsrf();
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "UNAVAILABLE", "NETWORK", "Le service ne répond pas. Vérifiez votre connexion et réessayez.");
  }
  const text = await response.text();
  let payload = {};
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch (err) {
      payload = {};
    }
  }
  if (!response.ok) {
    const status = payload.error || payload;
    const details = status.details || [];
    const info = details.find((d) => (d["@type"] || "").endsWith("google.rpc.ErrorInfo")) || {};
    const badRequest = details.find((d) => (d["@type"] || "").endsWith("google.rpc.BadRequest"));
    const fields = {};
    for (const violation of (badRequest && badRequest.fieldViolations) || []) {
      fields[violation.field] = violation.description;
    }
    throw new ApiError(response.status, status.status || status.code, info.reason || "", status.message || "", fields);
  }
  if (payload && typeof payload.csrfToken === "string") setCsrfToken(payload.csrfToken);
  return payload;
}

function fill(template, request, used) {
  // AIP-127 path templates: {field=pattern} takes the request's field value.
  return template.replace(/\{([a-zA-Z_.]+)(=[^}]*)?\}/g, (_, fieldPath) => {
    if (!fieldPath.includes(".")) used.add(fieldPath);
    let value = request;
    for (const part of fieldPath.split(".")) value = value ? value[part] : undefined;
    if (typeof value !== "string" || !value) throw new ApiError(0, "INVALID_ARGUMENT", "FIELD_REQUIRED", fieldPath);
    return value.split("/").map(encodeURIComponent).join("/");
  });
}

/**
 * Calls one RPC of the public API through its HTTP binding (routes.js): path
 * variables from the request; then the JSON body (`body: "*"`: every other
 * field; `body: "field"`: that field) and the few query parameters the route
 * allows (ids, paging, masks: never medical content).
 */
export async function rpc(method, request = {}) {
  const route = ROUTES[method];
  if (!route) throw new Error(`no HTTP route for ${method}`);
  const used = new Set();
  let path = fill(route.path, request, used);
  let body;
  const rest = Object.entries(request).filter(([key]) => !used.has(key));
  const params = new URLSearchParams();
  if (route.body === "*") {
    body = Object.fromEntries(rest);
  } else {
    for (const [key, value] of rest) {
      if (key === route.body) {
        body = value;
        continue;
      }
      if (value === undefined || value === null || value === "") continue;
      if (!(route.query || []).includes(key)) throw new Error(`${method}: ${key} may not go in a URL`);
      for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
    }
  }
  const query = params.toString();
  if (query) path += `?${query}`;
  try {
    return await send(route.verb, path, body);
  } catch (err) {
    // An expired access cookie: the refresh cookie buys a new one once.
    if (!(err instanceof ApiError) || err.status !== 401 || route.anonymous) throw err;
    try {
      await refresh();
    } catch (refreshErr) {
      err.sessionEnded = true;
      throw err;
    }
    return send(route.verb, path, body);
  }
}

/** The door's own session routes (who is logged in, logout). */
export async function session() {
  return send("GET", SESSION.whoami, undefined);
}

export async function login(challenge, code) {
  return send("POST", SESSION.login, { challenge, code, requestId: requestId() });
}

export async function refresh() {
  return send("POST", SESSION.refresh, {});
}

export async function logout() {
  return send("POST", SESSION.logout, {});
}
