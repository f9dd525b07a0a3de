/* DOM helpers of the chat page: element building, icons, the screen-reader live region.
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

export const $ = (selector, root = document) => root.querySelector(selector);

/** Create an element. `props.text` sets textContent; `props.class` the class; other
 *  props become attributes (or event handlers for on*). Children: nodes or strings
 *  (strings become text nodes). Never parses HTML. */
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
/** Small inline icon from fixed path data (constants in this file, never server data). */
export function icon(paths, cls = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", cls);
  for (const d of paths) {
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}
/* An alert box: the title, then the lines (paragraph elements), then the actions row. */
export function errorBox(title, lines, ...actions) {
  return el(
    "div",
    { class: "error-box", role: "alert" },
    icon(ICONS.alert, "icon error-icon"),
    el("div", { class: "error-main" }, el("p", { class: "error-title", text: title }), ...lines, el("div", { class: "error-actions" }, ...actions)),
  );
}
export const ICONS = {
  info: ["M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z", "M12 11v5", "M12 7.6v.4"],
  alert: ["M12 3.5 2.8 19.5h18.4z", "M12 10v4.5", "M12 17.2v.3"],
  copy: ["M9 9h10v11H9z", "M5 15V4h10"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  retry: ["M4 12a8 8 0 1 0 2.3-5.6", "M4 4v4.5h4.5"],
  doc: ["M7 3h7l4 4v14H7z", "M14 3v4h4", "M10 12h5M10 15.5h5"],
};

export function str(value) {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : String(value);
}

export function announce(message) {
  const region = $("#sr-status");
  region.textContent = "";
  // A separate task so that repeated identical messages are announced again.
  setTimeout(() => { region.textContent = message; }, 30);
}

/** The text of an element as one line for a screen reader, cut at about 1,000 characters. */
export function spoken(node) {
  const text = str(node && node.textContent).replace(/\s+/g, " ").trim();
  return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
}

const languageNames = (() => {
  try {
    return new Intl.DisplayNames([document.documentElement.lang || "en"], { type: "language" });
  } catch {
    return null;
  }
})();
export function languageName(code) {
  const c = str(code);
  try {
    const name = languageNames && languageNames.of(c);
    return name && name !== c ? name : c;
  } catch {
    return c;
  }
}
