/* Chat page for the Tajikistan programmes assistant.
 *
 * Plain JS, no build step. SECURITY: everything that comes from the server (answers,
 * passages, quotes, titles, document text, error messages) is put into the page as text
 * only: textContent / createTextNode, never innerHTML.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------- helpers

  const $ = (selector, root = document) => root.querySelector(selector);

  /** Create an element. `props.text` sets textContent; `props.class` the class; other
   *  props become attributes (or event handlers for on*). Children: nodes or strings
   *  (strings become text nodes). Never parses HTML. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "text") node.textContent = String(value);
        else if (key === "class") node.className = value;
        else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  /** Small inline icon from fixed path data (constants in this file, never server data). */
  function icon(paths, cls = "icon") {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", cls);
    for (const d of paths) {
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      svg.appendChild(path);
    }
    return svg;
  }
  const ICONS = {
    info: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M12 11v5", "M12 7.6v.4"],
    alert: ["M12 3.5 2.8 19.5h18.4z", "M12 10v4.5", "M12 17.2v.3"],
    copy: ["M9 9h10v11H9z", "M5 15V4h10"],
    check: ["M5 12.5l4.5 4.5L19 7.5"],
    retry: ["M4 12a8 8 0 1 0 2.3-5.6", "M4 4v4.5h4.5"],
    doc: ["M7 3h7l4 4v14H7z", "M14 3v4h4", "M10 12h5M10 15.5h5"],
  };

  function str(value) {
    return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
  }

  function announce(message) {
    const region = $("#sr-status");
    region.textContent = "";
    // A separate task so that repeated identical messages are announced again.
    setTimeout(() => { region.textContent = message; }, 30);
  }

  /** The text of an element as one line for a screen reader, cut at about 1,000 characters. */
  function spoken(node) {
    const text = str(node && node.textContent).replace(/\s+/g, " ").trim();
    return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
  }

  function isNarrow() {
    return window.matchMedia("(max-width: 760px)").matches;
  }

  function nearBottom() {
    const doc = document.documentElement;
    return window.innerHeight + window.scrollY >= doc.scrollHeight - 140;
  }

  function scrollToBottom() {
    window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "auto" });
  }

  /** Encode a doc_id for the URL path, keeping "/" separators. */
  function docPath(docId) {
    return "documents/" + str(docId).split("/").map(encodeURIComponent).join("/");
  }

  const languageNames = (() => {
    try {
      return new Intl.DisplayNames([document.documentElement.lang || "en"], { type: "language" });
    } catch {
      return null;
    }
  })();
  function languageName(code) {
    const c = str(code);
    try {
      const name = languageNames && languageNames.of(c);
      return name && name !== c ? name : c;
    } catch {
      return c;
    }
  }

  // ---------------------------------------------------------------- language

  // Every word the page shows comes from the catalogues in i18n/ (one per language).
  const CATALOGUES = window.ASSISTANT_I18N || {};
  const LANGUAGES = ["en", "fr", "ru"];
  const LANG_STORE = "assistant.language";

  function storedLanguage() {
    try {
      const v = localStorage.getItem(LANG_STORE);
      return LANGUAGES.includes(v) ? v : "";
    } catch {
      return "";
    }
  }

  /** The stored choice, else the first of the browser's languages the page speaks, else English. */
  function initialLanguage() {
    const stored = storedLanguage();
    if (stored) return stored;
    const wanted = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]);
    for (const tag of wanted) {
      const base = str(tag).toLowerCase().split("-")[0];
      if (LANGUAGES.includes(base)) return base;
    }
    return "en";
  }

  let pageLang = initialLanguage();

  /** The message `key` in `lang` (the page's language by default), with {name} filled from `vars`. */
  function t(key, vars, lang = pageLang) {
    const cat = CATALOGUES[lang] || CATALOGUES.en || {};
    let text = key in cat ? cat[key] : (CATALOGUES.en || {})[key];
    if (text === undefined) text = key;
    if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
    return text;
  }

  /** The language a question is written in, for the answer area's words: Cyrillic is Russian;
   *  French by its accents and common words; otherwise English. Falls back to the page's. */
  function questionLanguage(question) {
    const q = str(question);
    if (!q.trim()) return pageLang;
    if (/[\u0400-\u04FF]/.test(q)) return "ru";
    if (/[àâçéèêëîïôûùüÿœ]/i.test(q) || /\b(qui|quel|quelle|quels|quelles|est|sont|les|des|du|le|la|pour|comment|pourquoi|combien|quand|où)\b/i.test(q)) return "fr";
    if (/[a-z]/i.test(q)) return "en";
    return pageLang;
  }

  /** Put the catalogue's words into the page's fixed labels (data-i18n* attributes). */
  function applyLanguage() {
    document.documentElement.lang = pageLang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const [attr, name] of [["data-i18n-placeholder", "placeholder"], ["data-i18n-aria-label", "aria-label"], ["data-i18n-title", "title"]]) {
      for (const node of document.querySelectorAll(`[${attr}]`)) node.setAttribute(name, t(node.getAttribute(attr)));
    }
    for (const button of document.querySelectorAll(".lang-btn")) button.setAttribute("aria-pressed", String(button.dataset.lang === pageLang));
  }

  function setLanguage(lang) {
    if (!LANGUAGES.includes(lang)) return;
    pageLang = lang;
    try {
      localStorage.setItem(LANG_STORE, lang);
    } catch {
      /* storage unavailable: the choice lasts until the page is left */
    }
    applyLanguage();
    if (typeof onLanguageChange === "function") onLanguageChange();
  }
  let onLanguageChange = null;

  // ---------------------------------------------------------------- API key

  // A server started with ASSISTANT_API_KEY needs "Authorization: Bearer <key>" on every data
  // request. The key is kept in sessionStorage: this tab only, gone when it closes.
  const KEY_STORE = "assistant.apiKey";

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORE) || "";
    } catch {
      return "";
    }
  }

  function storeApiKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key);
      else sessionStorage.removeItem(KEY_STORE);
    } catch {
      /* storage unavailable: the key is not kept */
    }
  }

  /** `headers` plus the Authorization header when a key is set. */
  function withKey(headers) {
    const key = apiKey();
    return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(message, { code = "error", status = 0, network = false } = {}) {
      super(message);
      this.code = code;
      this.status = status;
      this.network = network;
    }
  }

  function networkError() {
    return new ApiError(
      t("error.network"),
      { code: "network_error", network: true },
    );
  }

  /** Build an ApiError from a non-2xx response, using the JSON error body when there is one. */
  async function errorFromResponse(res) {
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

  async function getJSON(url, options = {}) {
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
  async function askStreaming(body, signal, onDelta) {
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

  // ---------------------------------------------------------------- text rendering

  const MARKER = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

  /** Render answer text into `target`, turning [n] markers into citation chips.
   *  With `byN` (final answer) they are buttons that open the passage; without it
   *  (still streaming) they are same-sized inert chips, so nothing jumps at the end. */
  function renderAnswerText(target, text, byN, onCite) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(MARKER)) {
      const numbers = match[1].split(",").map((s) => Number.parseInt(s.trim(), 10));
      if (byN && !numbers.every((n) => byN.has(n))) continue; // not a citation: keep as text
      if (match.index > last) frag.appendChild(document.createTextNode(text.slice(last, match.index)));
      for (const n of numbers) {
        const chipText = [el("span", { class: "bracket", text: "[" }), String(n), el("span", { class: "bracket", text: "]" })];
        if (byN) {
          const c = byN.get(n);
          const label = t("sources.cite", { n, title: str(c.title) || str(c.doc_id) });
          frag.appendChild(
            el("button", { type: "button", class: "cite", "aria-label": label, title: label, "data-n": n, onclick: (e) => onCite(c, e.currentTarget) }, chipText),
          );
        } else {
          frag.appendChild(el("span", { class: "cite pending", "aria-hidden": "true" }, chipText));
        }
      }
      last = match.index + match[0].length;
    }
    if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
    target.replaceChildren(frag);
  }

  /** Find [start, end) of `quote` in `text`, preferring the given offsets when they agree. */
  function locate(text, quote, start, end) {
    const valid = Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= text.length;
    if (valid && (!quote || text.slice(start, end) === quote)) return [start, end];
    if (quote) {
      const i = text.indexOf(quote);
      if (i >= 0) return [i, i + quote.length];
      const trimmed = quote.trim();
      const j = trimmed ? text.indexOf(trimmed) : -1;
      if (j >= 0) return [j, j + trimmed.length];
    }
    return valid ? [start, end] : null;
  }

  /** Text with an optional outer range (the passage) and inner range (the quote, as <mark>);
   *  `answer`, a range inside the quote, is the short answer (emphasised inside the quote mark). */
  function highlighted(text, outer, inner, { markOuter = false, answer = null } = {}) {
    const frag = document.createDocumentFragment();
    const t = (a, b) => (b > a ? document.createTextNode(text.slice(a, b)) : null);
    if (inner && (!outer || inner[0] < outer[0] || inner[1] > outer[1])) outer = null;
    if (!inner || !answer || answer[0] < inner[0] || answer[1] > inner[1] || answer[0] >= answer[1]) answer = null;
    const quoteMark = () =>
      answer
        ? el("mark", { class: "quote-mark" }, t(inner[0], answer[0]), el("strong", { class: "answer-mark" }, t(answer[0], answer[1])), t(answer[1], inner[1]))
        : el("mark", { class: "quote-mark" }, t(inner[0], inner[1]));
    if (outer) {
      append(frag, [t(0, outer[0])]);
      let span;
      if (inner) {
        span = el("span", { class: "passage-range" }, t(outer[0], inner[0]), quoteMark(), t(inner[1], outer[1]));
      } else {
        span = el(markOuter ? "mark" : "span", { class: markOuter ? "passage-range passage-mark" : "passage-range" }, t(outer[0], outer[1]));
      }
      append(frag, [span, t(outer[1], text.length)]);
    } else if (inner) {
      append(frag, [t(0, inner[0]), quoteMark(), t(inner[1], text.length)]);
    } else {
      append(frag, [t(0, text.length)]);
    }
    return frag;
  }

  /** The short answer's [start, end) inside the citation's quote, or null when the answer is the
   *  whole sentence (answer_start/answer_end are document offsets, like quote_start). */
  function answerInQuote(c) {
    if (!c || typeof c.answer_start !== "number" || typeof c.answer_end !== "number" || typeof c.quote_start !== "number") return null;
    const a = c.answer_start - c.quote_start;
    const b = c.answer_end - c.quote_start;
    return Number.isInteger(a) && Number.isInteger(b) && a >= 0 && a < b && b <= str(c.quote).length ? [a, b] : null;
  }

  /** `span` (relative to the quote) moved to where the quote was found in a larger text. */
  function shiftInto(quoteRange, span, quote) {
    return quoteRange && span && quoteRange[1] - quoteRange[0] === quote.length ? [quoteRange[0] + span[0], quoteRange[0] + span[1]] : null;
  }

  /** The quote as a quotation, with the short answer (when there is one) highlighted in it. */
  function quoteWithAnswer(c, cls) {
    const quote = str(c.quote);
    const span = answerInQuote(c);
    return el("blockquote", { class: cls }, span ? [quote.slice(0, span[0]), el("mark", { class: "answer-mark" }, quote.slice(span[0], span[1])), quote.slice(span[1])].filter(Boolean) : quote);
  }

  function formatMs(ms) {
    if (!Number.isFinite(ms)) return "";
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  function totalTime(timings) {
    if (!timings || typeof timings !== "object") return null;
    if (Number.isFinite(timings.total)) return timings.total;
    if (Number.isFinite(timings.total_ms)) return timings.total_ms;
    const values = Object.values(timings).filter(Number.isFinite);
    return values.length ? values.reduce((a, b) => a + b, 0) : null;
  }

  // ---------------------------------------------------------------- chat

  const form = $("#ask-form");
  const input = $("#question");
  const sendButton = $("#send");
  const conversation = $("#conversation");
  const emptyState = $("#empty-state");

  let current = null; // {controller, turn, question} while a question is being answered

  // The conversation: each answered turn on the page keeps what the server needs to read a
  // follow-up ("And when does it end?"): sent as `history`, oldest first, the last MAX_HISTORY.
  const MAX_HISTORY = 6;
  const turnRecords = new WeakMap(); // <li> of an answered turn -> {question, answer, doc_ids, search_question}

  function rememberTurn(turn, result) {
    const citations = (Array.isArray(result.citations) ? result.citations : []).filter((c) => c && typeof c === "object");
    const docIds = [...new Set(citations.map((c) => str(c.doc_id)).filter(Boolean))].slice(0, 20);
    const record = {
      question: turn.question.slice(0, 4000),
      answer: str(result.answer).replace(MARKER, "").replace(/[ \t]+([.,;:!?])/g, "$1").replace(/[ \t]{2,}/g, " ").trim().slice(0, 8000),
      doc_ids: docIds,
    };
    const searched = str(result.search_question).trim();
    if (searched) record.search_question = searched.slice(0, 8000);
    turnRecords.set(turn.li, record);
  }

  /** The answered turns shown before `li` (the question being asked), the last MAX_HISTORY. */
  function historyBefore(li) {
    const history = [];
    for (const item of conversation.children) {
      if (item === li) break;
      const record = turnRecords.get(item);
      if (record) history.push(record);
    }
    return history.slice(-MAX_HISTORY);
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 220) + "px";
  }

  function setBusy(busy) {
    form.classList.toggle("busy", busy);
    sendButton.setAttribute("aria-label", t(busy ? "composer.stopAria" : "composer.sendAria"));
    $(".send-label", sendButton).textContent = t(busy ? "composer.stop" : "composer.send");
    sendButton.classList.toggle("btn-stop", busy);
  }

  function updateEmptyState() {
    emptyState.hidden = conversation.children.length > 0;
  }

  function requestBody(question, turn) {
    const body = { question };
    const mode = $("#opt-mode").value;
    const topK = Number.parseInt($("#opt-topk").value, 10);
    if (mode && mode !== "auto") body.mode = mode;
    if (Number.isInteger(topK) && topK !== 5) body.top_k = topK;
    const history = turn ? historyBefore(turn.li) : [];
    if (history.length) body.history = history;
    return body;
  }

  /** One question and its answer in the conversation. */
  function createTurn(question) {
    const li = el("li", { class: "turn" });
    const user = el("div", { class: "msg msg-user" }, el("p", { class: "visually-hidden", text: t("msg.youAsked") }), el("div", { class: "bubble", text: question }));
    const status = el("span", { class: "answer-status" }, el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")), " Searching the documents…");
    const text = el("div", { class: "answer-text" }, status);
    const extra = el("div", { class: "answer-extra" });
    const article = el("article", { class: "msg msg-assistant", "aria-busy": "true", "aria-label": t("msg.answer") }, text, extra);
    li.append(user, article);
    li.dataset.question = question;
    return { li, article, text, extra, question };
  }

  async function ask(questionRaw) {
    if (current) return;
    const question = str(questionRaw).trim();
    if (!question) {
      input.focus();
      announce(t("composer.empty"));
      return;
    }
    // A retried question replaces its failed attempt.
    const last = conversation.lastElementChild;
    if (last && last.classList.contains("turn-failed") && last.dataset.question === question) last.remove();

    const turn = createTurn(question);
    turn.lang = questionLanguage(question);
    conversation.appendChild(turn.li);
    updateEmptyState();
    if (input.value.trim() === question) {
      input.value = "";
      autosize();
    }
    turn.li.scrollIntoView({ block: "start", behavior: "auto" });
    scrollToBottom();

    const controller = new AbortController();
    current = { controller, turn, question };
    setBusy(true);
    let streamed = "";
    try {
      const result = await askStreaming(requestBody(question, turn), controller.signal, (delta) => {
        const follow = nearBottom();
        streamed += delta;
        turn.text.classList.add("streaming");
        renderAnswerText(turn.text, streamed, null);
        if (follow) scrollToBottom();
      });
      if (!result || typeof result !== "object" || typeof result.answer !== "string") {
        throw new ApiError(t("error.incomplete"), { code: "bad_response" });
      }
      const follow = nearBottom();
      renderResult(turn, result);
      if (follow) scrollToBottom();
      // The answer itself is announced (the live region #sr-status), not only that it is ready.
      announce(result.abstained ? t("msg.noAnswer", null, turn.lang) : `${t("msg.ready", null, turn.lang)} ${spoken(turn.text)}`);
    } catch (err) {
      if (controller.signal.aborted) renderStopped(turn, streamed);
      else if (err instanceof ApiError && err.code === "llm_failed") await answerExtractively(turn, question, controller.signal, streamed);
      else renderError(turn, err, streamed);
    } finally {
      current = null;
      setBusy(false);
    }
  }

  /** The language model broke off part-way: one stream is one answer, so ask again for the
   *  extractive answer (quotes only) and show that instead, with a note saying why. */
  async function answerExtractively(turn, question, signal, streamed) {
    turn.text.classList.remove("streaming", "partial");
    turn.text.replaceChildren(
      el("span", { class: "answer-status" }, el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")), " " + t("msg.quotingInstead", null, turn.lang)),
    );
    try {
      const result = await getJSON("ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...requestBody(question, turn), mode: "extractive" }),
        signal,
      });
      if (!result || typeof result !== "object" || typeof result.answer !== "string") {
        throw new ApiError(t("error.incomplete"), { code: "bad_response" });
      }
      const follow = nearBottom();
      renderResult(turn, result);
      const note = el(
        "p",
        { class: "fallback-note", role: "note" },
        icon(ICONS.info, "icon fallback-icon"),
        el("span", { text: t("msg.llmFailed", null, turn.lang) }),
      );
      turn.article.insertBefore(note, turn.text);
      if (follow) scrollToBottom();
      announce(t("msg.llmFailedShort", null, turn.lang));
    } catch (err) {
      if (signal.aborted) renderStopped(turn, streamed);
      else renderError(turn, err, streamed);
    }
  }

  function stop() {
    if (current) current.controller.abort();
  }

  function finishTurn(turn) {
    turn.article.setAttribute("aria-busy", "false");
    turn.text.classList.remove("streaming");
  }

  // The server's own abstention sentence, when it only repeats the heading above it.
  const GENERIC_ABSTENTION = /^the documents (?:do not|don't|dont) (?:answer|contain an answer to) this(?: question)?\.?$/i;

  function renderResult(turn, result) {
    finishTurn(turn);
    const L = turn.lang || pageLang; // the answer area speaks the question's language
    const citations = (Array.isArray(result.citations) ? result.citations : []).filter((c) => c && typeof c === "object");
    const related = (Array.isArray(result.related) ? result.related : []).filter((c) => c && typeof c === "object");
    const extra = [];

    if (result.abstained) {
      turn.article.classList.add("abstained");
      const answer = str(result.answer).trim();
      const note = el(
        "div",
        { class: "abstain-note" },
        icon(ICONS.info, "icon abstain-icon"),
        el(
          "div",
          null,
          el("p", { class: "abstain-title", text: t("abstain.title", null, L) }),
          answer && !GENERIC_ABSTENTION.test(answer) ? el("p", { class: "abstain-server", text: answer }) : null,
          el("p", {
            class: "abstain-body",
            text: related.length
              ? t("abstain.related", null, L)
              : t("abstain.none", null, L),
          }),
        ),
      );
      turn.text.replaceChildren(note);
      if (related.length) extra.push(sourceList(related, t("sources.related", null, L), true));
    } else {
      const byN = new Map(citations.map((c) => [Number(c.n), c]));
      renderAnswerText(turn.text, str(result.answer), byN, (c, trigger) => showCitation(c, trigger, false));
      // A short answer (the reader found the words that answer): large, with the quoted
      // sentence beneath it and the words highlighted there.
      const first = citations[0];
      const short = Boolean(answerInQuote(first)) && Boolean(str(first.quote));
      turn.text.classList.toggle("short-answer", short);
      if (short) extra.push(quoteWithAnswer(first, "short-quote"));
      const searched = searchedLine(result, L, str(turn.li.dataset.question));
      if (searched) extra.push(searched);
      if (citations.length) extra.push(sourceList(citations, t("sources.heading", null, L), false));
    }
    if (result.abstained) {
      const searched = searchedLine(result, L, str(turn.li.dataset.question));
      if (searched) extra.unshift(searched);
    }
    rememberTurn(turn, result);

    extra.push(metaLine(result));
    extra.push(actions(result, L));
    turn.extra.replaceChildren(...extra);
  }

  /** "Understood as: …" when the server rewrote a follow-up into a standalone question (so a
   *  wrong reading can be seen); nothing when it used the question as asked. A rewrite that is
   *  the question plus the conversation's key words in brackets reads as the question and
   *  "in the context of: …". */
  function searchedLine(result, lang = pageLang, asked = "") {
    const rewrite = str(result.rewrite);
    const searched = str(result.search_question).trim();
    if (!searched || !rewrite || rewrite === "none" || searched === asked.trim()) return null;
    const parts = /^(.*\S)\s*\(([^()]+)\)$/.exec(searched);
    const question = parts ? parts[1] : searched;
    const context = parts ? parts[2].trim() : "";
    return el(
      "p",
      { class: "searched", title: t("understood.title", null, lang) },
      el("span", { class: "searched-label", text: t("understood.label", null, lang) }),
      el("q", { class: "searched-question", text: question }),
      context ? el("span", { class: "searched-context", text: " " + t("understood.context", { words: context }, lang) }) : null,
    );
  }

  function sourceList(items, heading, related) {
    const id = `srcs-${Math.random().toString(36).slice(2, 9)}`;
    const list = el("ol", { class: "sources", "aria-labelledby": id });
    for (const c of items) {
      const quote = str(c.quote) || str(c.text);
      const span = str(c.quote) ? answerInQuote(c) : null;
      list.appendChild(
        el(
          "li",
          null,
          el(
            "button",
            {
              type: "button",
              class: "source-btn",
              onclick: (e) => showCitation(c, e.currentTarget, related),
            },
            el("span", { class: "source-n", text: str(c.n) }),
            el(
              "span",
              { class: "source-main" },
              el("span", { class: "source-title", text: str(c.title) || str(c.doc_id) }),
              c.publisher ? el("span", { class: "source-pub", text: str(c.publisher) }) : null,
              quote && span
                ? el("span", { class: "source-quote" }, quote.slice(0, span[0]), el("strong", { class: "answer-mark" }, quote.slice(span[0], span[1])), quote.slice(span[1]))
                : quote
                  ? el("span", { class: "source-quote", text: quote })
                  : null,
            ),
          ),
        ),
      );
    }
    return el("section", { class: `sources-block${related ? " related" : ""}` }, el("h2", { class: "sources-heading", id, text: heading }), list);
  }

  function metaLine(result) {
    const parts = [];
    const mode = str(result.mode);
    if (mode) parts.push(el("span", { class: "meta-mode", text: t("meta.mode", { mode }) }));
    const total = totalTime(result.timings_ms);
    if (total !== null) {
      const detail = Object.entries(result.timings_ms || {})
        .filter(([, v]) => Number.isFinite(v))
        .map(([k, v]) => `${k}: ${formatMs(v)}`)
        .join(", ");
      parts.push(el("span", { class: "meta-time", title: detail, text: formatMs(total) }));
    }
    const line = el("div", { class: "answer-meta" });
    parts.forEach((p, i) => {
      if (i) line.appendChild(el("span", { class: "meta-sep", "aria-hidden": "true", text: "·" }));
      line.appendChild(p);
    });
    const warnings = (Array.isArray(result.warnings) ? result.warnings : []).map(str).filter(Boolean);
    if (warnings.length) {
      line.appendChild(el("ul", { class: "warnings", "aria-label": t("meta.warnings") }, warnings.map((w) => el("li", { text: w }))));
    }
    return line;
  }

  function actions(result, lang = pageLang) {
    const label = el("span", { text: t("copy.label", null, lang) });
    const button = el("button", { type: "button", class: "btn btn-quiet btn-small copy-btn", "aria-label": t("copy.aria", null, lang) }, icon(ICONS.copy), label);
    button.addEventListener("click", async () => {
      const ok = await copyText(clipboardText(result, lang));
      button.classList.toggle("copied", ok);
      label.textContent = t(ok ? "copy.done" : "copy.failed", null, lang);
      announce(t(ok ? "copy.announceDone" : "copy.announceFailed", null, lang));
      clearTimeout(button._reset);
      button._reset = setTimeout(() => {
        label.textContent = t("copy.label", null, lang);
        button.classList.remove("copied");
      }, 2000);
    });
    return el("div", { class: "answer-actions" }, button);
  }

  /** The answer as plain text, followed by its citations written out: title, publisher, date
   *  (from the document list when the page has it), page where known, and the quoted sentence. */
  function clipboardText(result, lang = pageLang) {
    const items = result.abstained ? result.related : result.citations;
    const answer = str(result.answer).trim();
    const lines = [result.abstained ? `${t("abstain.title", null, lang)} ${GENERIC_ABSTENTION.test(answer) ? "" : answer}`.trim() : answer];
    const list = (Array.isArray(items) ? items : []).filter((c) => c && typeof c === "object");
    if (list.length) {
      lines.push("", t(result.abstained ? "copy.related" : "copy.sources", null, lang));
      for (const c of list) {
        const doc = typeof docsById !== "undefined" && docsById ? docsById.get(str(c.doc_id)) : null;
        const date = str(c.date) || (doc ? str(doc.date) || str(doc.period) : "");
        const page = Number.isInteger(c.page)
          ? t("copy.page", { page: Number.isInteger(c.page_end) && c.page_end !== c.page ? `${c.page}–${c.page_end}` : c.page }, lang)
          : "";
        const facts = [str(c.publisher), date, page].filter(Boolean);
        lines.push(`[${str(c.n)}] ${str(c.title) || str(c.doc_id)}${facts.length ? `. ${facts.join(", ")}` : ""}`);
        const quote = str(c.quote).trim() || str(c.text).trim();
        if (quote) lines.push(`    “${quote.replace(/\s+/g, " ")}”`);
      }
    }
    return lines.join("\n") + "\n";
  }

  async function copyText(text) {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        return true;
      }
    } catch {
      /* fall through */
    }
    const area = el("textarea", { class: "clipboard-helper", readonly: true, "aria-hidden": "true" });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }

  function restoreQuestion(question) {
    if (!input.value.trim()) {
      input.value = question;
      autosize();
    }
  }

  function retryButton(turn) {
    return el(
      "button",
      {
        type: "button",
        class: "btn btn-small retry-btn",
        onclick: () => {
          if (current) return;
          turn.li.remove();
          updateEmptyState();
          if (input.value.trim() === turn.question) {
            input.value = "";
            autosize();
          }
          ask(turn.question);
        },
      },
      icon(ICONS.retry),
      t("retry"),
    );
  }

  function renderError(turn, err, streamed) {
    finishTurn(turn);
    turn.li.classList.add("turn-failed");
    turn.article.classList.add("errored");
    const apiError = err instanceof ApiError ? err : new ApiError(str(err && err.message) || t("error.generic"));
    if (streamed) {
      renderAnswerText(turn.text, streamed, null);
      turn.text.classList.add("partial");
    } else {
      turn.text.replaceChildren();
      turn.text.hidden = true;
    }
    const title = t(apiError.network ? "error.networkTitle" : "error.answerTitle");
    const code = apiError.status ? `${apiError.code} · HTTP ${apiError.status}` : apiError.code;
    const box = el(
      "div",
      { class: "error-box", role: "alert" },
      icon(ICONS.alert, "icon error-icon"),
      el(
        "div",
        { class: "error-main" },
        el("p", { class: "error-title", text: title }),
        el("p", { class: "error-message", text: apiError.message }),
        el("p", { class: "error-code", text: t("error.code", { code }) }),
        el("div", { class: "error-actions" }, retryButton(turn), el("span", { class: "error-hint", text: t("error.questionBack") })),
      ),
    );
    turn.extra.replaceChildren(box);
    restoreQuestion(turn.question);
    if (nearBottom()) scrollToBottom();
    if (apiError.status === 401) askForKey();
  }

  function renderStopped(turn, streamed) {
    finishTurn(turn);
    turn.li.classList.add("turn-failed");
    if (streamed) {
      renderAnswerText(turn.text, streamed, null);
      turn.text.classList.add("partial");
    } else {
      turn.text.replaceChildren();
      turn.text.hidden = true;
    }
    turn.extra.replaceChildren(el("div", { class: "stopped-note" }, el("span", { text: t("stopped") }), retryButton(turn)));
    announce(t("stopped"));
  }

  function newChat() {
    stop();
    conversation.replaceChildren();
    updateEmptyState();
    closePanel();
    selectTab("chat");
    input.focus();
    announce(t("chat.started"));
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (current) stop();
    else ask(input.value);
  });

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.altKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      if (!current) ask(input.value);
    }
  });
  input.addEventListener("input", autosize);

  for (const button of document.querySelectorAll(".example")) {
    button.addEventListener("click", () => ask(button.textContent));
  }
  $("#new-chat").addEventListener("click", newChat);

  // ---------------------------------------------------------------- panel (passage / document)

  const panel = $("#panel");
  const panelTitle = $("#panel-title");
  const panelKicker = $("#panel-kicker");
  const panelContent = $("#panel-content");
  const panelBody = $("#panel-body");
  const panelBack = $("#panel-back");
  let panelReturn = null;
  let panelToken = 0;
  let backTarget = null;

  // The side panel starts below the header, so opening it neither covers nor moves the header's controls.
  function placePanel() {
    const bar = document.querySelector(".topbar");
    const bottom = bar ? Math.max(0, Math.round(bar.getBoundingClientRect().bottom)) : 0;
    panel.style.setProperty("--panel-top", `${bottom}px`);
  }

  function openPanel(trigger) {
    if (trigger && !panel.contains(trigger)) panelReturn = trigger;
    placePanel();
    if (!panel.open) {
      if (isNarrow()) panel.showModal();
      else panel.show();
      panel.classList.toggle("as-sheet", isNarrow());
    }
    document.body.classList.add("panel-open");
  }

  function closePanel() {
    if (panel.open) panel.close();
  }

  panel.addEventListener("close", () => {
    document.body.classList.remove("panel-open");
    panelToken++;
    const target = panelReturn;
    panelReturn = null;
    if (target && target.isConnected) target.focus();
  });
  panel.addEventListener("cancel", (e) => {
    e.preventDefault();
    closePanel();
  });
  $("#panel-close").addEventListener("click", closePanel);
  panelBack.addEventListener("click", () => {
    if (backTarget) showCitation(backTarget.citation, null, backTarget.related);
  });

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && panel.open && !e.defaultPrevented) {
      e.preventDefault();
      closePanel();
    }
  });

  window.addEventListener("resize", () => {
    if (panel.open) placePanel();
    // Switching between side panel and full-screen dialog needs a reopen.
    if (panel.open && panel.classList.contains("as-sheet") !== isNarrow()) {
      const keep = panelReturn;
      panel.close();
      panelReturn = keep;
      if (isNarrow()) panel.showModal();
      else panel.show();
      panel.classList.toggle("as-sheet", isNarrow());
      document.body.classList.add("panel-open");
    }
  });

  function setPanel(kicker, title, ...content) {
    panelKicker.textContent = kicker;
    panelTitle.textContent = title;
    panelContent.replaceChildren(...content);
    panelBody.scrollTop = 0;
  }

  function metaText(c) {
    return [str(c.publisher), str(c.source)].filter(Boolean).join(" · ");
  }

  /** For a citation of a PDF page: a "Show page" button and the figure it fills with the page as the server renders
   *  it, the quote highlighted. Fetched with the API key and shown as a data: URL (the CSP's img-src allows data:). */
  function pageView(c) {
    if (!Number.isInteger(c.page) || c.page < 1 || !str(c.doc_id)) return [null, null];
    const quoted = Number.isInteger(c.quote_start) && Number.isInteger(c.quote_end) && c.quote_end > c.quote_start;
    const url = `${docPath(c.doc_id)}/pages/${c.page}.png${quoted ? `?start=${c.quote_start}&end=${c.quote_end}` : ""}`;
    const figure = el("figure", { class: "page-view", id: `page-view-${panelToken}`, hidden: true });
    const label = t("panel.showPage", { page: c.page });
    const button = el("button", { type: "button", class: "btn btn-small show-page", "aria-expanded": "false", "aria-controls": figure.id }, icon(ICONS.doc), label);
    let state = "idle";
    button.addEventListener("click", async () => {
      if (state === "loading") return;
      if (state === "shown") {
        const open = figure.hidden;
        figure.hidden = !open;
        button.setAttribute("aria-expanded", String(open));
        return;
      }
      state = "loading";
      button.setAttribute("aria-busy", "true");
      figure.hidden = false;
      button.setAttribute("aria-expanded", "true");
      figure.replaceChildren(el("p", { class: "panel-note", text: t("panel.pageLoading") }));
      try {
        let res;
        try {
          res = await fetch(url, { headers: withKey({ Accept: "image/png" }) });
        } catch {
          throw networkError();
        }
        if (!res.ok) throw await errorFromResponse(res);
        const blob = await res.blob();
        const src = await new Promise((resolve, reject) => {
          const reader = new FileReader();
          reader.onload = () => resolve(reader.result);
          reader.onerror = () => reject(new ApiError(t("error.unreadable")));
          reader.readAsDataURL(blob);
        });
        const alt = t(quoted ? "panel.pageAlt" : "panel.pageAltPlain", { page: c.page, title: str(c.title) || str(c.doc_id) });
        figure.replaceChildren(el("img", { class: "page-image", src, alt }));
        state = "shown";
        figure.scrollIntoView({ block: "nearest" });
      } catch (err) {
        figure.replaceChildren(el("p", { class: "panel-note", role: "alert", text: t("panel.pageError", { message: str(err && err.message) }) }));
        state = "idle";
      } finally {
        button.removeAttribute("aria-busy");
      }
    });
    return [button, figure];
  }

  function showCitation(c, trigger, related) {
    panelToken++;
    openPanel(trigger);
    panelBack.hidden = true;
    backTarget = null;
    const text = str(c.text);
    const quote = str(c.quote);
    const range = quote ? locate(text, quote, Number(c.quote_start) - Number(c.start), Number(c.quote_end) - Number(c.start)) : null;
    const answer = related ? null : shiftInto(range, answerInQuote(c), quote);
    const passage = el("blockquote", { class: "passage" }, highlighted(text, null, range, { answer }));
    const notes = [];
    if (quote && !range) notes.push(el("p", { class: "panel-note", text: t("panel.notLocated") }));
    if (!quote && related) notes.push(el("p", { class: "panel-note", text: t("panel.nearby") }));
    const score = Number(c.score);
    const [pageButton, pageFigure] = pageView(c);
    setPanel(
      t(related ? "panel.closest" : "panel.source", { n: str(c.n) }),
      str(c.title) || str(c.doc_id),
      metaText(c) ? el("p", { class: "panel-meta", text: metaText(c) }) : null,
      el("h3", { class: "panel-subhead", text: t(quote ? (answer ? "panel.citedAnswer" : "panel.cited") : "panel.passage") }),
      passage,
      ...notes,
      el(
        "div",
        { class: "panel-actions" },
        el("button", { type: "button", class: "btn btn-primary btn-small read-doc", onclick: () => showDocument(c.doc_id, { citation: c, related }) }, icon(ICONS.doc), t("panel.readDoc")),
        pageButton,
        Number.isFinite(score) ? el("span", { class: "panel-score", text: t("panel.relevance", { score: score.toFixed(2) }) }) : null,
      ),
      ...(pageFigure ? [pageFigure] : []),
    );
    panelTitle.setAttribute("tabindex", "-1");
    panelTitle.focus({ preventScroll: true });
    const mark = $("mark", passage);
    if (mark) mark.scrollIntoView({ block: "nearest" });
  }

  const docCache = new Map();
  async function fetchDocument(docId) {
    if (docCache.has(docId)) return docCache.get(docId);
    const promise = getJSON(docPath(docId));
    docCache.set(docId, promise);
    promise.catch(() => docCache.delete(docId));
    return promise;
  }

  async function showDocument(docId, { citation = null, related = false, trigger = null } = {}) {
    const token = ++panelToken;
    openPanel(trigger);
    backTarget = citation ? { citation, related } : null;
    panelBack.hidden = !citation;
    const info = docsById.get(docId);
    const knownTitle = (citation && str(citation.title)) || (info && str(info.title)) || str(docId);
    setPanel(t("panel.document"), knownTitle, el("p", { class: "panel-loading", role: "status", text: t("panel.loading") }));
    panelTitle.setAttribute("tabindex", "-1");
    panelTitle.focus({ preventScroll: true });

    let doc;
    try {
      doc = await fetchDocument(docId);
    } catch (err) {
      if (token !== panelToken) return;
      setPanel(
        t("panel.document"),
        knownTitle,
        el(
          "div",
          { class: "error-box", role: "alert" },
          icon(ICONS.alert, "icon error-icon"),
          el(
            "div",
            { class: "error-main" },
            el("p", { class: "error-title", text: t("panel.docError") }),
            el("p", { class: "error-message", text: str(err && err.message) }),
            el("div", { class: "error-actions" }, el("button", { type: "button", class: "btn btn-small retry-btn", onclick: () => showDocument(docId, { citation, related }) }, icon(ICONS.retry), t("retry"))),
          ),
        ),
      );
      return;
    }
    if (token !== panelToken) return;
    const text = str(doc.text);
    let outer = null;
    let inner = null;
    let answer = null;
    if (citation) {
      outer = locate(text, str(citation.text), Number(citation.start), Number(citation.end));
      if (str(citation.quote)) inner = locate(text, str(citation.quote), Number(citation.quote_start), Number(citation.quote_end));
      if (!related) answer = shiftInto(inner, answerInQuote(citation), str(citation.quote));
    }
    const body = el("div", { class: "doc-text" }, highlighted(text, outer, inner, { markOuter: true, answer }));
    setPanel(t("panel.document"), str(doc.title) || knownTitle, docMeta(doc), body);
    const target = $("mark", body);
    if (target) {
      // Centre the highlighted place in the panel's scroll area.
      requestAnimationFrame(() => target.scrollIntoView({ block: "center" }));
    }
  }

  function docMeta(d) {
    const rows = [];
    const add = (label, value) => {
      if (value) rows.push(el("dt", { text: label }), el("dd", { text: value }));
    };
    add(t("field.publisher"), str(d.publisher));
    add(t("field.date"), str(d.date));
    add(t("field.period"), str(d.period));
    const langs = Array.isArray(d.language) ? d.language.map(languageName).join(", ") : str(d.language);
    add(t("field.language"), langs);
    add(t("field.source"), str(d.source));
    const wrap = el("div", { class: "doc-meta-block" }, rows.length ? el("dl", { class: "doc-meta" }, rows) : null);
    if (d.description) wrap.appendChild(el("p", { class: "doc-desc", text: str(d.description) }));
    return wrap;
  }

  // ---------------------------------------------------------------- documents view

  const docsList = $("#docs-list");
  const docsStatus = $("#docs-status");
  const docsFilter = $("#docs-filter");
  const skippedBox = $("#docs-skipped");
  const skippedList = $("#skipped-list");
  let docs = null;
  let skipped = [];
  let docsLoading = null;
  const docsById = new Map();
  const removing = new Set(); // uploaded documents being deleted (the local index is rebuilt without them)
  const freshIds = new Set(); // just uploaded: their cards are marked

  /** Load (or reload) the list; concurrent callers share one request. */
  function loadDocuments() {
    if (!docsLoading) docsLoading = fetchDocuments().finally(() => { docsLoading = null; });
    return docsLoading;
  }

  async function fetchDocuments() {
    if (!docs) docsStatus.replaceChildren(document.createTextNode(t("docs.loading")));
    try {
      const data = await getJSON("documents");
      docs = (data && Array.isArray(data.documents) ? data.documents : []).filter((d) => d && typeof d === "object");
      skipped = (data && Array.isArray(data.skipped) ? data.skipped : []).filter((f) => f && typeof f === "object");
      docsById.clear();
      for (const d of docs) docsById.set(d.doc_id, d);
      for (const id of removing) if (!docsById.has(id)) removing.delete(id);
      renderDocuments();
    } catch (err) {
      docs = null;
      if (err instanceof ApiError && err.status === 401) askForKey();
      docsStatus.replaceChildren(
        el("span", { class: "docs-error", text: t("docs.loadError", { message: str(err && err.message) }) }),
        " ",
        el("button", { type: "button", class: "btn btn-small retry-btn", onclick: loadDocuments }, icon(ICONS.retry), t("retry")),
      );
    }
  }

  function renderDocuments() {
    if (!docs) return;
    const q = docsFilter.value.trim().toLowerCase();
    const shown = docs.filter((d) => !q || [d.title, d.publisher, d.description, d.doc_id].some((v) => str(v).toLowerCase().includes(q)));
    docsStatus.textContent = docs.length
      ? q
        ? t("docs.shown", { shown: shown.length, total: docs.length })
        : docs.length === 1
          ? t("docs.countOne")
          : t("docs.countMany", { count: docs.length })
      : t("docs.empty");
    docsList.replaceChildren(...shown.map(docCard));
    skippedBox.hidden = skipped.length === 0;
    skippedList.replaceChildren(
      ...skipped.map((f) => el("li", { class: "skipped-item" }, el("span", { class: "skipped-source", text: str(f.source) }), el("span", { class: "skipped-reason", text: str(f.reason) }))),
    );
  }

  function docCard(d) {
    const langs = Array.isArray(d.language) ? d.language.map(languageName).join(", ") : str(d.language);
    const when = [str(d.date), str(d.period)].filter(Boolean).join(" · ");
    const facts = [];
    const fact = (label, value) => {
      if (value) facts.push(el("div", null, el("dt", { text: label }), el("dd", { text: value })));
    };
    fact(t(d.date ? "field.date" : "field.period"), when);
    fact(t("field.language"), langs);
    if (Number.isFinite(d.chars)) fact(t("field.length"), t("field.chars", { count: d.chars.toLocaleString(pageLang) }));
    const warnings = (Array.isArray(d.warnings) ? d.warnings : []).map(str).filter(Boolean);
    const gone = removing.has(d.doc_id);
    const card = el(
      "li",
      { class: "doc-card" + (freshIds.has(d.doc_id) ? " doc-new" : "") + (gone ? " doc-removing" : ""), "data-doc-id": str(d.doc_id) },
      el(
        "h3",
        { class: "doc-title" },
        el("button", { type: "button", class: "doc-open", onclick: (e) => showDocument(d.doc_id, { trigger: e.currentTarget }) }, str(d.title) || str(d.doc_id)),
      ),
      d.publisher ? el("p", { class: "doc-pub", text: str(d.publisher) }) : null,
      facts.length ? el("dl", { class: "doc-facts" }, facts) : null,
      d.description ? el("p", { class: "doc-desc", text: str(d.description) }) : null,
      warnings.length
        ? el("ul", { class: "doc-warnings", "aria-label": t("meta.warnings") }, warnings.map((w) => el("li", null, icon(ICONS.alert, "icon warn-icon"), el("span", { text: w }))))
        : null,
      el("p", { class: "doc-source", text: str(d.source) }),
    );
    if (d.uploaded === true) card.appendChild(deleteControl(d, gone));
    return card;
  }

  /** "Delete" on an uploaded document, confirmed in place (no dialog). */
  function deleteControl(d, gone) {
    const title = str(d.title) || str(d.doc_id);
    const box = el("div", { class: "doc-actions" });
    const note = el("p", { class: "doc-action-note", role: "status" });
    const ask = () => {
      const yes = el("button", { type: "button", class: "btn btn-small btn-danger doc-delete-confirm", onclick: () => remove() }, t("docs.deleteYes"));
      const no = el("button", { type: "button", class: "btn btn-small doc-delete-cancel", onclick: () => { idle(); box.querySelector(".doc-delete").focus(); } }, t("docs.cancel"));
      box.replaceChildren(el("span", { class: "doc-confirm-text", text: t("docs.deleteConfirm") }), yes, no, note);
      yes.focus();
    };
    const idle = () => {
      box.replaceChildren(
        el("button", { type: "button", class: "btn btn-small doc-delete", "aria-label": t("docs.deleteAria", { title }), onclick: ask }, t("docs.delete")),
        note,
      );
    };
    const remove = async () => {
      box.replaceChildren(note);
      note.textContent = t("docs.deleting");
      let res;
      try {
        res = await fetch(docPath(d.doc_id), { method: "DELETE", headers: withKey({ Accept: "application/json" }) });
      } catch {
        idle();
        note.textContent = networkError().message;
        return;
      }
      if (!res.ok) {
        const err = await errorFromResponse(res);
        if (res.status === 401) askForKey();
        idle();
        note.textContent = t("docs.deleteError", { message: err.message });
        return;
      }
      docCache.delete(d.doc_id);
      freshIds.delete(d.doc_id);
      announce(t("docs.deleted", { title }));
      if (res.status === 202) {
        removing.add(d.doc_id); // still in the index until the rebuild without it goes live
        renderDocuments();
        const deadline = Date.now() + 60 * 1000;
        for (;;) {
          await waitForIndex(() => {});
          await loadDocuments();
          if (!docsById.has(d.doc_id) || Date.now() > deadline) break;
          await sleep(POLL_MS);
        }
      } else {
        await loadDocuments();
      }
    };
    if (gone) box.appendChild(el("p", { class: "doc-action-note", role: "status", text: t("docs.removing") }));
    else idle();
    return box;
  }

  docsFilter.addEventListener("input", renderDocuments);

  // ---------------------------------------------------------------- uploads

  const uploadInput = $("#upload-input");
  const uploadZone = $("#upload-zone");
  const uploadList = $("#upload-list");
  const POLL_MS = 1000;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** One row per file: its name, a progress bar and what is happening to it. */
  function uploadRow(file) {
    const bar = el("progress", { class: "upload-bar", max: "100", value: "0", "aria-label": t("upload.bar", { name: file.name }) });
    const state = el("span", { class: "upload-state", text: t("upload.waiting") });
    const li = el("li", { class: "upload-item" }, el("span", { class: "upload-name", text: file.name }), bar, state);
    uploadList.appendChild(li);
    return {
      li,
      progress(fraction) {
        bar.value = Math.round(fraction * 100);
        state.textContent = t("upload.progress", { percent: Math.round(fraction * 100) });
      },
      set(kind, text, { keepBar = false } = {}) {
        li.dataset.state = kind; // uploading, indexing, added, skipped, failed
        state.textContent = text;
        if (!keepBar) bar.hidden = true;
        else bar.removeAttribute("value"); // indeterminate while indexing
      },
    };
  }

  /** POST one file with XMLHttpRequest (fetch has no upload progress); resolves with the status and parsed body. */
  function sendFile(file, row) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "documents");
      xhr.setRequestHeader("Accept", "application/json");
      const key = apiKey();
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable && e.total) row.progress(e.loaded / e.total);
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
      row.progress(0);
      xhr.send(form);
    });
  }

  /** What the server said about the one file of a request. */
  function fileResult(status, body) {
    if (status === 202 && body && Array.isArray(body.files) && body.files[0]) return body.files[0];
    const error = body && typeof body.error === "object" && body.error ? body.error : null;
    const files = error && error.details && Array.isArray(error.details.files) ? error.details.files : [];
    if (files[0] && files[0].status === "skipped") return files[0];
    if (status === 0) return { status: "failed", reason: networkError().message };
    if (status === 401) {
      askForKey();
      return { status: "failed", reason: t(apiKey() ? "upload.keyRejected" : "upload.keyNeeded") };
    }
    return { status: "failed", reason: (error && str(error.message)) || t("upload.http", { status }) };
  }

  /** Poll /health until no build runs; `onProgress` gets its message meanwhile. */
  async function waitForIndex(onProgress, timeoutMs = 30 * 60 * 1000) {
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

  async function uploadFiles(fileList) {
    const files = Array.from(fileList || []);
    uploadInput.value = "";
    if (!files.length) return;
    const rows = files.map((f) => [f, uploadRow(f)]);
    const queued = [];
    for (const [file, row] of rows) {
      const { status, body } = await sendFile(file, row);
      const result = fileResult(status, body);
      if (result.status === "queued" && result.doc_id) {
        queued.push([str(result.doc_id), row]);
        row.set("indexing", t("upload.uploadedIndexing"), { keepBar: true });
      } else if (result.status === "skipped") {
        row.set("skipped", t("upload.skipped", { reason: str(result.reason) || t("upload.refused") }));
      } else {
        row.set("failed", t("upload.failed", { reason: str(result.reason) }));
      }
    }
    if (!queued.length) return;
    announce(queued.length === 1 ? t("upload.announceOne") : t("upload.announceMany", { count: queued.length }));
    const deadline = Date.now() + 60 * 1000;
    let missing = queued;
    let failures = new Map(); // doc_id -> why its indexing failed (the server retries it)
    for (;;) {
      const health = await waitForIndex((message) => {
        for (const [, row] of missing) row.set("indexing", t("upload.indexingMessage", { message }), { keepBar: true });
      });
      failures = new Map((Array.isArray(health && health.failed) ? health.failed : []).map((f) => [str(f.doc_id), str(f.error)]));
      await loadDocuments();
      missing = missing.filter(([id]) => !docsById.has(id));
      if (!missing.length || missing.every(([id]) => failures.has(id)) || Date.now() > deadline) break;
      await sleep(POLL_MS);
    }
    for (const [id, row] of queued) {
      if (docsById.has(id)) {
        freshIds.add(id);
        row.set("added", t("upload.added"));
      } else if (failures.has(id)) {
        row.set("failed", t("upload.retrying", { reason: failures.get(id) }));
      } else {
        row.set("failed", t("upload.notIndexed"));
      }
    }
    renderDocuments();
    const added = queued.filter(([id]) => docsById.has(id)).length;
    if (added) announce(added === 1 ? t("upload.addedOne") : t("upload.addedMany", { count: added }));
  }

  $("#upload-btn").addEventListener("click", () => uploadInput.click());
  uploadInput.addEventListener("change", () => uploadFiles(uploadInput.files));
  // Drag and drop onto the upload area (or anywhere in the Documents view).
  const docsView = $("#view-docs");
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  docsView.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    uploadZone.classList.add("dragging");
  });
  docsView.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  docsView.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) uploadZone.classList.remove("dragging");
  });
  docsView.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    uploadZone.classList.remove("dragging");
    uploadFiles(e.dataTransfer.files);
  });

  // ---------------------------------------------------------------- tabs

  const tabs = { chat: $("#tab-chat"), docs: $("#tab-docs") };
  const views = { chat: $("#view-chat"), docs: $("#view-docs") };

  function selectTab(name, focus = false) {
    for (const [key, tab] of Object.entries(tabs)) {
      const on = key === name;
      tab.setAttribute("aria-selected", String(on));
      // Both tabs stay in the Tab order (arrow keys also switch).
      tab.removeAttribute("tabindex");
      views[key].hidden = !on;
    }
    if (focus) tabs[name].focus();
    if (name === "docs" && !docs) loadDocuments();
    const hash = name === "docs" ? "#documents" : "";
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  }

  tabs.chat.addEventListener("click", () => selectTab("chat"));
  tabs.docs.addEventListener("click", () => selectTab("docs"));
  $(".tabs").addEventListener("keydown", (e) => {
    const order = ["chat", "docs"];
    const now = order.findIndex((k) => tabs[k] === document.activeElement);
    if (now < 0) return;
    let next = null;
    if (e.key === "ArrowRight") next = order[(now + 1) % order.length];
    else if (e.key === "ArrowLeft") next = order[(now + order.length - 1) % order.length];
    else if (e.key === "Home") next = order[0];
    else if (e.key === "End") next = order[order.length - 1];
    if (next) {
      e.preventDefault();
      selectTab(next, true);
    }
  });

  // ---------------------------------------------------------------- API key field

  const keyMenu = $("#key-menu");
  const keyInput = $("#api-key");
  const keyNote = $("#api-key-note");

  function saveKey() {
    const key = keyInput.value.trim();
    const valid = !key || /^[\x21-\x7e]+$/.test(key); // it travels in an HTTP header
    storeApiKey(valid ? key : "");
    if (valid) keyInput.removeAttribute("aria-invalid");
    else keyInput.setAttribute("aria-invalid", "true");
    keyNote.textContent = !valid
      ? t("key.invalid")
      : key
        ? t("key.saved")
        : t("key.note");
    keyMenu.classList.toggle("has-key", valid && Boolean(key));
  }

  /** Open the key field (after a 401) so the user can type the key. */
  function askForKey() {
    keyMenu.open = true;
    keyInput.focus();
  }

  keyInput.value = apiKey();
  keyMenu.classList.toggle("has-key", Boolean(keyInput.value));
  keyInput.addEventListener("input", saveKey);
  keyInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") {
      e.preventDefault();
      keyMenu.open = false;
      $("summary", keyMenu).focus();
    }
  });

  // ---------------------------------------------------------------- language switch

  for (const button of document.querySelectorAll(".lang-btn")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
  onLanguageChange = () => {
    saveKey();
    if (docs) renderDocuments();
  };

  // ---------------------------------------------------------------- start

  applyLanguage();
  selectTab(location.hash === "#documents" ? "docs" : "chat");
  updateEmptyState();
  autosize();
  if (!views.chat.hidden) input.focus({ preventScroll: true });

  // For tests and debugging only: no access to anything the page doesn't already show.
  window.__assistantPage = { ready: true };
})();
