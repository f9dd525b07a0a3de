/* Citations' quoted sentences: the [n] marker, finding a quote in its passage or document,
 * and the quote (with the short answer) highlighted as text nodes and <mark>s. */

import { append, el, str } from "./dom.js";

/** A citation marker in answer text: [1] or [1, 3]. */
export const MARKER = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

/** Find [start, end) of `quote` in `text`, preferring the given offsets when they agree. */
export function locate(text, quote, start, end) {
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
export function highlighted(text, outer, inner, { markOuter = false, answer = null } = {}) {
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
export function answerInQuote(c) {
  if (!c || typeof c.answer_start !== "number" || typeof c.answer_end !== "number" || typeof c.quote_start !== "number") return null;
  const a = c.answer_start - c.quote_start;
  const b = c.answer_end - c.quote_start;
  return Number.isInteger(a) && Number.isInteger(b) && a >= 0 && a < b && b <= str(c.quote).length ? [a, b] : null;
}

/** `span` (relative to the quote) moved to where the quote was found in a larger text. */
export function shiftInto(quoteRange, span, quote) {
  return quoteRange && span && quoteRange[1] - quoteRange[0] === quote.length ? [quoteRange[0] + span[0], quoteRange[0] + span[1]] : null;
}

/** The quote as a quotation, with the short answer (when there is one) highlighted in it. */
export function quoteWithAnswer(c, cls) {
  const quote = str(c.quote);
  const span = answerInQuote(c);
  return el("blockquote", { class: cls }, span ? [quote.slice(0, span[0]), el("mark", { class: "answer-mark" }, quote.slice(span[0], span[1])), quote.slice(span[1])].filter(Boolean) : quote);
}
