/* The conversation: the question box, asking (streamed, with the extractive fallback), a turn's
 * failure or stop with its retry, and "New chat".
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

import { $, announce, el, errorBox, icon, ICONS, spoken, str } from "./dom.js";
import { ApiError, askPlain, askStreaming } from "./api.js";
import { finishTurn, renderAnswerText, renderResult } from "./answer.js";
import { historyBefore } from "./history.js";
import { questionLanguage, t } from "./i18n.js";
import { askForKey } from "./keyfield.js";
import { nearBottom, scrollToBottom } from "./layout.js";
import { closePanel } from "./panel.js";
import { selectTab } from "./tabs.js";

const form = $("#ask-form");
const input = $("#question");
const sendButton = $("#send");
const conversation = $("#conversation");
const emptyState = $("#empty-state");

let current = null; // {controller, turn, question} while a question is being answered

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
    const result = await askPlain({ ...requestBody(question, turn), mode: "extractive" }, signal);
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

/* What arrived before a failure or a stop stays, marked partial; with nothing, the text is hidden. */
function showPartial(turn, streamed) {
  if (streamed) {
    renderAnswerText(turn.text, streamed, null);
    turn.text.classList.add("partial");
  } else {
    turn.text.replaceChildren();
    turn.text.hidden = true;
  }
}

function renderError(turn, err, streamed) {
  finishTurn(turn);
  turn.li.classList.add("turn-failed");
  turn.article.classList.add("errored");
  const apiError = err instanceof ApiError ? err : new ApiError(str(err && err.message) || t("error.generic"));
  showPartial(turn, streamed);
  const title = t(apiError.network ? "error.networkTitle" : "error.answerTitle");
  const code = apiError.status ? `${apiError.code} · HTTP ${apiError.status}` : apiError.code;
  const box = errorBox(
    title,
    [el("p", { class: "error-message", text: apiError.message }), el("p", { class: "error-code", text: t("error.code", { code }) })],
    retryButton(turn),
    el("span", { class: "error-hint", text: t("error.questionBack") }),
  );
  turn.extra.replaceChildren(box);
  restoreQuestion(turn.question);
  if (nearBottom()) scrollToBottom();
  if (apiError.status === 401) askForKey();
}

function renderStopped(turn, streamed) {
  finishTurn(turn);
  turn.li.classList.add("turn-failed");
  showPartial(turn, streamed);
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

/** Wire the composer (Enter sends, Shift+Enter is a new line), the example questions and "New chat". */
export function initChat() {
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
}

/** The page's first state: the empty-state text when nothing was asked, the question box sized and focused. */
export function startChat() {
  updateEmptyState();
  autosize();
  if (!$("#view-chat").hidden) input.focus({ preventScroll: true });
}
