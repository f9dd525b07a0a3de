/* The document list as last loaded from /documents, by doc_id: filled by the Documents tab,
 * read by the panel (a document's title) and by copy-with-sources (a citation's date). */

export const docsById = new Map();
