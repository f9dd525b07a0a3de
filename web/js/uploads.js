/* Adding documents: the file picker and drag and drop, one row per file with its progress, and
 * waiting for the index to take them in.
 *
 * SECURITY: everything that comes from the server is put into the page as text only
 * (textContent / createTextNode), never innerHTML.
 */

import { $, announce, el, str } from "./dom.js";
import { apiKey, networkError, POLL_MS, sendFile, sleep, waitForIndex } from "./api.js";
import { loadDocuments, markFresh, renderDocuments } from "./documents.js";
import { t } from "./i18n.js";
import { askForKey } from "./keyfield.js";
import { docsById } from "./library.js";

const uploadInput = $("#upload-input");
const uploadZone = $("#upload-zone");
const uploadList = $("#upload-list");

/** One row per file: its name, a progress bar and what is happening to it. */
function uploadRow(file) {
  const bar = el("progress", { class: "upload-bar", max: "100", value: "0", "aria-label": t("upload.bar", { name: file.name }) });
  const state = el("span", { class: "upload-state", text: t("upload.waiting") });
  const li = el("li", { class: "upload-item" }, el("span", { class: "upload-name", text: file.name }), bar, state);
  uploadList.appendChild(li);
  return {
    li,
    progress(fraction) {
      bar.value = Math.round(fraction * 100);
      state.textContent = t("upload.progress", { percent: Math.round(fraction * 100) });
    },
    set(kind, text, { keepBar = false } = {}) {
      li.dataset.state = kind; // uploading, indexing, added, skipped, failed
      state.textContent = text;
      if (!keepBar) bar.hidden = true;
      else bar.removeAttribute("value"); // indeterminate while indexing
    },
  };
}

/** What the server said about the one file of a request. */
function fileResult(status, body) {
  if (status === 202 && body && Array.isArray(body.files) && body.files[0]) return body.files[0];
  const error = body && typeof body.error === "object" && body.error ? body.error : null;
  const files = error && error.details && Array.isArray(error.details.files) ? error.details.files : [];
  if (files[0] && files[0].status === "skipped") return files[0];
  if (status === 0) return { status: "failed", reason: networkError().message };
  if (status === 401) {
    askForKey();
    return { status: "failed", reason: t(apiKey() ? "upload.keyRejected" : "upload.keyNeeded") };
  }
  return { status: "failed", reason: (error && str(error.message)) || t("upload.http", { status }) };
}

async function uploadFiles(fileList) {
  const files = Array.from(fileList || []);
  uploadInput.value = "";
  if (!files.length) return;
  const rows = files.map((f) => [f, uploadRow(f)]);
  const queued = [];
  for (const [file, row] of rows) {
    const { status, body } = await sendFile(file, (fraction) => row.progress(fraction));
    const result = fileResult(status, body);
    if (result.status === "queued" && result.doc_id) {
      queued.push([str(result.doc_id), row]);
      row.set("indexing", t("upload.uploadedIndexing"), { keepBar: true });
    } else if (result.status === "skipped") {
      row.set("skipped", t("upload.skipped", { reason: str(result.reason) || t("upload.refused") }));
    } else {
      row.set("failed", t("upload.failed", { reason: str(result.reason) }));
    }
  }
  if (!queued.length) return;
  announce(queued.length === 1 ? t("upload.announceOne") : t("upload.announceMany", { count: queued.length }));
  const deadline = Date.now() + 60 * 1000;
  let missing = queued;
  let failures = new Map(); // doc_id -> why its indexing failed (the server retries it)
  for (;;) {
    const health = await waitForIndex((message) => {
      for (const [, row] of missing) row.set("indexing", t("upload.indexingMessage", { message }), { keepBar: true });
    });
    failures = new Map((Array.isArray(health && health.failed) ? health.failed : []).map((f) => [str(f.doc_id), str(f.error)]));
    await loadDocuments();
    missing = missing.filter(([id]) => !docsById.has(id));
    if (!missing.length || missing.every(([id]) => failures.has(id)) || Date.now() > deadline) break;
    await sleep(POLL_MS);
  }
  for (const [id, row] of queued) {
    if (docsById.has(id)) {
      markFresh(id);
      row.set("added", t("upload.added"));
    } else if (failures.has(id)) {
      row.set("failed", t("upload.retrying", { reason: failures.get(id) }));
    } else {
      row.set("failed", t("upload.notIndexed"));
    }
  }
  renderDocuments();
  const added = queued.filter(([id]) => docsById.has(id)).length;
  if (added) announce(added === 1 ? t("upload.addedOne") : t("upload.addedMany", { count: added }));
}

/** Wire "Add documents" and dropping files onto the Documents view. */
export function initUploads() {
  $("#upload-btn").addEventListener("click", () => uploadInput.click());
  uploadInput.addEventListener("change", () => uploadFiles(uploadInput.files));
  // Drag and drop onto the upload area (or anywhere in the Documents view).
  const docsView = $("#view-docs");
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  docsView.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    uploadZone.classList.add("dragging");
  });
  docsView.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  docsView.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) uploadZone.classList.remove("dragging");
  });
  docsView.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    uploadZone.classList.remove("dragging");
    uploadFiles(e.dataTransfer.files);
  });
}
