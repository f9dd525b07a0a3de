/* The API key field in the header: kept as typed (when valid), opened after a 401, closed with
 * Enter or Escape. The key itself is stored by api.js. */

import { $ } from "./dom.js";
import { apiKey, storeApiKey } from "./api.js";
import { t } from "./i18n.js";

const keyMenu = $("#key-menu");
const keyInput = $("#api-key");
const keyNote = $("#api-key-note");

export function saveKey() {
  const key = keyInput.value.trim();
  const valid = !key || /^[\x21-\x7e]+$/.test(key); // it travels in an HTTP header
  storeApiKey(valid ? key : "");
  if (valid) keyInput.removeAttribute("aria-invalid");
  else keyInput.setAttribute("aria-invalid", "true");
  keyNote.textContent = !valid
    ? t("key.invalid")
    : key
      ? t("key.saved")
      : t("key.note");
  keyMenu.classList.toggle("has-key", valid && Boolean(key));
}

/** Open the key field (after a 401) so the user can type the key. */
export function askForKey() {
  keyMenu.open = true;
  keyInput.focus();
}

/** Fill the field with the stored key and wire it. */
export function initKeyField() {
  keyInput.value = apiKey();
  keyMenu.classList.toggle("has-key", Boolean(keyInput.value));
  keyInput.addEventListener("input", saveKey);
  keyInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") {
      e.preventDefault();
      keyMenu.open = false;
      $("summary", keyMenu).focus();
    }
  });
}
