/* The page's language: message lookup in the catalogues (web/i18n/<lang>.js), the choice of
 * language (stored, else the browser's), and the page's fixed labels. */

import { str } from "./dom.js";

// Every word the page shows comes from the catalogues in i18n/ (one per language).
// They are classic scripts (window.ASSISTANT_I18N) loaded before the page's modules run.
const CATALOGUES = window.ASSISTANT_I18N || {};
export const LANGUAGES = ["en", "fr", "ru"];
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

export let pageLang = initialLanguage();

/** The message `key` in `lang` (the page's language by default), with {name} filled from `vars`. */
export function t(key, vars, lang = pageLang) {
  const cat = CATALOGUES[lang] || CATALOGUES.en || {};
  let text = key in cat ? cat[key] : (CATALOGUES.en || {})[key];
  if (text === undefined) text = key;
  if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return text;
}

/** The language a question is written in, for the answer area's words: Cyrillic is Russian;
 *  French by its accents and common words; otherwise English. Falls back to the page's. */
export function questionLanguage(question) {
  const q = str(question);
  if (!q.trim()) return pageLang;
  if (/[\u0400-\u04FF]/.test(q)) return "ru";
  if (/[àâçéèêëîïôûùüÿœ]/i.test(q) || /\b(qui|quel|quelle|quels|quelles|est|sont|les|des|du|le|la|pour|comment|pourquoi|combien|quand|où)\b/i.test(q)) return "fr";
  if (/[a-z]/i.test(q)) return "en";
  return pageLang;
}

/** Put the catalogue's words into the page's fixed labels (data-i18n* attributes). */
export function applyLanguage() {
  document.documentElement.lang = pageLang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const [attr, name] of [["data-i18n-placeholder", "placeholder"], ["data-i18n-aria-label", "aria-label"], ["data-i18n-title", "title"]]) {
    for (const node of document.querySelectorAll(`[${attr}]`)) node.setAttribute(name, t(node.getAttribute(attr)));
  }
  for (const button of document.querySelectorAll(".lang-btn")) button.setAttribute("aria-pressed", String(button.dataset.lang === pageLang));
}

export function setLanguage(lang) {
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

/** Call `handler` after each change of the page's language (once its fixed labels are redone). */
export function whenLanguageChanges(handler) {
  onLanguageChange = handler;
}
