/* The Chat / Documents tabs: selecting one (and the #documents address), arrow keys, Home and End. */

import { $ } from "./dom.js";
import { docsLoaded, loadDocuments } from "./documents.js";

const tabs = { chat: $("#tab-chat"), docs: $("#tab-docs") };
const views = { chat: $("#view-chat"), docs: $("#view-docs") };

export function selectTab(name, focus = false) {
  for (const [key, tab] of Object.entries(tabs)) {
    const on = key === name;
    tab.setAttribute("aria-selected", String(on));
    // Both tabs stay in the Tab order (arrow keys also switch).
    tab.removeAttribute("tabindex");
    views[key].hidden = !on;
  }
  if (focus) tabs[name].focus();
  if (name === "docs" && !docsLoaded()) loadDocuments();
  const hash = name === "docs" ? "#documents" : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
}

/** Wire the tabs: click, and ArrowLeft / ArrowRight / Home / End between them. */
export function initTabs() {
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
}
