/* The panel beside the conversation (a full-screen dialog on a phone): a citation's passage with
 * its quote highlighted, the page image of a PDF citation, and a whole document.
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

import { $, el, errorBox, icon, ICONS, languageName, str } from "./dom.js";
import { ApiError, docPath, errorFromResponse, fetchDocument, fetchPageImage, networkError } from "./api.js";
import { t } from "./i18n.js";
import { isNarrow } from "./layout.js";
import { docsById } from "./library.js";
import { answerInQuote, highlighted, locate, shiftInto } from "./quotes.js";

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

export function closePanel() {
  if (panel.open) panel.close();
}

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
        res = await fetchPageImage(url);
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

export function showCitation(c, trigger, related) {
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

export async function showDocument(docId, { citation = null, related = false, trigger = null } = {}) {
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
      errorBox(
        t("panel.docError"),
        [el("p", { class: "error-message", text: str(err && err.message) })],
        el("button", { type: "button", class: "btn btn-small retry-btn", onclick: () => showDocument(docId, { citation, related }) }, icon(ICONS.retry), t("retry")),
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

/** Wire the panel: closing (button, Esc, the dialog's cancel) returns focus to what opened it;
 *  "Back to passage"; a resize between phone and desktop widths switches dialog and side panel. */
export function initPanel() {
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
}
