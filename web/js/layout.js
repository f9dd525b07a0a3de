/* Layout helpers: the narrow (phone) layout and keeping the conversation's end in view. */

export function isNarrow() {
  return window.matchMedia("(max-width: 760px)").matches;
}

export function nearBottom() {
  const doc = document.documentElement;
  return window.innerHeight + window.scrollY >= doc.scrollHeight - 140;
}

export function scrollToBottom() {
  window.scrollTo({ top: document.documentElement.scrollHeight, behavior: "auto" });
}
