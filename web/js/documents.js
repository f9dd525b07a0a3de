/* The Documents tab: the list of indexed documents (filter, cards, files not indexed) and deleting
 * an uploaded document.
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

import { $, announce, el, icon, ICONS, languageName, str } from "./dom.js";
import { ApiError, deleteDocument, errorFromResponse, forgetDocument, getJSON, networkError, POLL_MS, sleep, waitForIndex } from "./api.js";
import { pageLang, t } from "./i18n.js";
import { askForKey } from "./keyfield.js";
import { docsById } from "./library.js";
import { showDocument } from "./panel.js";

const docsList = $("#docs-list");
const docsStatus = $("#docs-status");
const docsFilter = $("#docs-filter");
const skippedBox = $("#docs-skipped");
const skippedList = $("#skipped-list");
let docs = null;
let skipped = [];
let docsLoading = null;
const removing = new Set(); // uploaded documents being deleted (the local index is rebuilt without them)
const freshIds = new Set(); // just uploaded: their cards are marked

/** Load (or reload) the list; concurrent callers share one request. */
export function loadDocuments() {
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

export function renderDocuments() {
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
      res = await deleteDocument(d.doc_id);
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
    forgetDocument(d.doc_id);
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

/** Whether the list has been loaded (and not failed since). */
export function docsLoaded() {
  return docs !== null;
}

/** Mark the card of `docId` as just uploaded. */
export function markFresh(docId) {
  freshIds.add(docId);
}

/** Wire the filter box. */
export function initDocuments() {
  docsFilter.addEventListener("input", renderDocuments);
}
