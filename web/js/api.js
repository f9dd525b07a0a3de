/* The server's API: the API key (kept for this tab), errors, /ask and /ask/stream (Server-Sent
 * Events), /documents (list, text, page images, upload, delete) and /health. */

import { str } from "./dom.js";
import { t } from "./i18n.js";

// ---------------------------------------------------------------- API key

// A server started with ASSISTANT_API_KEY needs "Authorization: Bearer <key>" on every data
// request. The key is kept in sessionStorage: this tab only, gone when it closes.
const KEY_STORE = "assistant.apiKey";

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    return "";
  }
}

export function storeApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  } catch {
    /* storage unavailable: the key is not kept */
  }
}

/** `headers` plus the Authorization header when a key is set. */
export function withKey(headers) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(message, { code = "error", status = 0, network = false } = {}) {
    super(message);
    this.code = code;
    this.status = status;
    this.network = network;
  }
}

export function networkError() {
  return new ApiError(
    t("error.network"),
    { code: "network_error", network: true },
  );
}

/** Build an ApiError from a non-2xx response, using the JSON error body when there is one. */
export async function errorFromResponse(res) {
  let code = `http_${res.status}`;
  let message = "";
  let body = "";
  try {
    body = await res.text();
  } catch {
    /* ignore */
  }
  try {
    const data = JSON.parse(body);
    if (data && typeof data.error === "object" && data.error) {
      message = str(data.error.message);
      code = str(data.error.code) || code;
    } else if (data && typeof data.error === "string") {
      message = data.error;
    } else if (data && data.detail) {
      // FastAPI's default error shape.
      message = Array.isArray(data.detail)
        ? data.detail.map((d) => str(d && d.msg)).filter(Boolean).join("; ")
        : str(data.detail);
    }
  } catch {
    /* not JSON */
  }
  if (res.status === 401) {
    message = apiKey()
      ? t("error.keyRejected")
      : t("error.keyNeeded");
    code = code === `http_${res.status}` ? "unauthorised" : code;
  }
  if (!message) {
    message = t("error.http", { status: res.status });
  }
  return new ApiError(message, { code, status: res.status });
}

export async function getJSON(url, options = {}) {
  let res;
  try {
    res = await fetch(url, { ...options, headers: withKey({ Accept: "application/json", ...(options.headers || {}) }) });
  } catch (err) {
    if (options.signal && options.signal.aborted) throw err;
    throw networkError();
  }
  if (!res.ok) throw await errorFromResponse(res);
  try {
    return await res.json();
  } catch {
    throw new ApiError(t("error.unreadable"), { code: "bad_response", status: res.status });
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n") };
}

/** POST /ask/stream and read the Server-Sent Events. Calls onDelta(text) for each delta;
 *  resolves with the final /ask response object; rejects with ApiError. */
export async function askStreaming(body, signal, onDelta) {
  let res;
  try {
    res = await fetch("ask/stream", {
      method: "POST",
      headers: withKey({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw networkError();
  }
  if (res.status === 404 || res.status === 405) {
    // No streaming endpoint on this server: fall back to the plain one.
    return getJSON("ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  }
  if (!res.ok) throw await errorFromResponse(res);
  const type = res.headers.get("content-type") || "";
  if (type.includes("application/json")) return res.json();
  if (!res.body) throw new ApiError(t("error.unreadable"), { code: "bad_response" });

  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let result = null;

  const handle = (block) => {
    const { event, data } = parseEvent(block);
    if (!data) return;
    let payload;
    try {
      payload = JSON.parse(data);
    } catch {
      throw new ApiError(t("error.malformedEvent"), { code: "bad_event" });
    }
    if (event === "delta") {
      if (payload && typeof payload.text === "string") onDelta(payload.text);
    } else if (event === "done") {
      result = payload;
    } else if (event === "error") {
      // "llm_failed": the language model broke off after part of its answer (ask() then asks
      // again extractively).
      const e = (payload && payload.error) || {};
      throw new ApiError(str(e.message) || t("error.streamError"), { code: str(e.code) || "stream_error" });
    }
  };

  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal.aborted) throw err;
        throw new ApiError(t("error.interrupted"), {
          code: "stream_interrupted",
          network: true,
        });
      }
      if (chunk.done) break;
      buffer += chunk.value;
      let hold = "";
      if (buffer.endsWith("\r")) {
        hold = "\r";
        buffer = buffer.slice(0, -1);
      }
      buffer = buffer.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        handle(block);
        if (result) return result;
      }
      buffer += hold;
    }
    if (buffer.trim()) handle(buffer.replace(/\r\n?/g, "\n"));
    if (result) return result;
    throw new ApiError(t("error.streamEnded"), { code: "incomplete_stream" });
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** POST /ask (no streaming) with `body`; resolves with the /ask response object. */
export function askPlain(body, signal) {
  return getJSON("ask", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

// ---------------------------------------------------------------- documents

/** Encode a doc_id for the URL path, keeping "/" separators. */
export function docPath(docId) {
  return "documents/" + str(docId).split("/").map(encodeURIComponent).join("/");
}

const docCache = new Map();
export async function fetchDocument(docId) {
  if (docCache.has(docId)) return docCache.get(docId);
  const promise = getJSON(docPath(docId));
  docCache.set(docId, promise);
  promise.catch(() => docCache.delete(docId));
  return promise;
}

/** Forget the cached text of `docId` (it was deleted). */
export function forgetDocument(docId) {
  docCache.delete(docId);
}

/** DELETE one uploaded document; resolves with the response, rejects (TypeError) when the server is unreachable. */
export function deleteDocument(docId) {
  return fetch(docPath(docId), { method: "DELETE", headers: withKey({ Accept: "application/json" }) });
}

/** GET a rendered page image (`url` from docPath); resolves with the response, rejects when unreachable. */
export function fetchPageImage(url) {
  return fetch(url, { headers: withKey({ Accept: "image/png" }) });
}

/** POST one file to /documents with XMLHttpRequest (fetch has no upload progress); `onProgress(fraction)`
 *  follows the upload. Resolves with the status and parsed body. */
export function sendFile(file, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "documents");
    xhr.setRequestHeader("Accept", "application/json");
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && e.total) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      resolve({ status: xhr.status, body });
    });
    xhr.addEventListener("error", () => resolve({ status: 0, body: null }));
    xhr.addEventListener("abort", () => resolve({ status: 0, body: null }));
    const form = new FormData();
    form.append("files", file, file.name);
    onProgress(0);
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- index builds

export const POLL_MS = 1000;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll /health until no build runs; `onProgress` gets its message meanwhile. */
export async function waitForIndex(onProgress, timeoutMs = 30 * 60 * 1000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let health = null;
    try {
      health = await getJSON("health");
    } catch {
      /* the server may restart: keep asking */
    }
    const building = health && health.building;
    if (building && typeof building === "object") onProgress(str(building.message) || t("upload.indexing"));
    else if (health && ["ok", "degraded", "unavailable"].includes(health.status)) return health;
    await sleep(POLL_MS);
  }
  return null;
}
