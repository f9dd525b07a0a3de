/* An answer in the conversation: its text with citation chips, the sources list, the abstention
 * box, the "Understood as" line, timings and warnings, and copy-with-sources.
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

import { announce, el, icon, ICONS, str } from "./dom.js";
import { rememberTurn } from "./history.js";
import { pageLang, t } from "./i18n.js";
import { docsById } from "./library.js";
import { showCitation } from "./panel.js";
import { answerInQuote, MARKER, quoteWithAnswer } from "./quotes.js";

/** Render answer text into `target`, turning [n] markers into citation chips.
 *  With `byN` (final answer) they are buttons that open the passage; without it
 *  (still streaming) they are same-sized inert chips, so nothing jumps at the end. */
export function renderAnswerText(target, text, byN, onCite) {
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

export function finishTurn(turn) {
  turn.article.setAttribute("aria-busy", "false");
  turn.text.classList.remove("streaming");
}

// The server's own abstention sentence, when it only repeats the heading above it.
const GENERIC_ABSTENTION = /^the documents (?:do not|don't|dont) (?:answer|contain an answer to) this(?: question)?\.?$/i;

export function renderResult(turn, result) {
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
      const doc = docsById.get(str(c.doc_id));
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
