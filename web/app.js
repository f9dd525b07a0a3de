/* Chat page for the Tajikistan programmes assistant: the entry module. The page's code is split
 * by concern into the ES modules in js/ (plain files, no build step); this one wires them up in
 * order and starts the page.
 *
 * SECURITY: everything that comes from the server (answers, passages, quotes, titles, document
 * text, error messages) is put into the page as text only: textContent / createTextNode, never
 * innerHTML. The API key (kept for this tab only) and every request to the server are in
 * js/api.js.
 */

import { initChat, startChat } from "./js/chat.js";
import { initDocuments, renderDocuments } from "./js/documents.js";
import { applyLanguage, setLanguage, whenLanguageChanges } from "./js/i18n.js";
import { initKeyField, saveKey } from "./js/keyfield.js";
import { initPanel } from "./js/panel.js";
import { initTabs, selectTab } from "./js/tabs.js";
import { initUploads } from "./js/uploads.js";

initChat();
initPanel();
initDocuments();
initUploads();
initTabs();
initKeyField();

// ---------------------------------------------------------------- language switch

for (const button of document.querySelectorAll(".lang-btn")) {
  button.addEventListener("click", () => setLanguage(button.dataset.lang));
}
whenLanguageChanges(() => {
  saveKey();
  renderDocuments(); // nothing until the list is loaded
});

// ---------------------------------------------------------------- start

applyLanguage();
selectTab(location.hash === "#documents" ? "docs" : "chat");
startChat();

// For tests and debugging only: no access to anything the page doesn't already show.
window.__assistantPage = { ready: true };
