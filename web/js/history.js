/* What the conversation remembers of its answered turns, sent with a follow-up question. */

import { $, str } from "./dom.js";
import { MARKER } from "./quotes.js";

// The conversation: each answered turn on the page keeps what the server needs to read a
// follow-up ("And when does it end?"): sent as `history`, oldest first, the last MAX_HISTORY.
export const MAX_HISTORY = 6;
const turnRecords = new WeakMap(); // <li> of an answered turn -> {question, answer, doc_ids, search_question}

export function rememberTurn(turn, result) {
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
export function historyBefore(li) {
  const history = [];
  for (const item of $("#conversation").children) {
    if (item === li) break;
    const record = turnRecords.get(item);
    if (record) history.push(record);
  }
  return history.slice(-MAX_HISTORY);
}
