// The create form's draft, kept in sessionStorage while the user signs in again after their
// session expired, so nothing they typed is lost. Only what they typed for the generation is
// kept (never passwords or keys), and uploaded images only while they stay small: the draft
// lives in this tab's sessionStorage, which is limited (a few MB) and gone when the tab
// closes. Pure (tested in js_tests/draft.test.js); the pages do the storage calls.

export const DRAFT_KEY = "genapi.draft.v1";
export const MAX_DRAFT_IMAGE_CHARS = 1_500_000;

const TEXT_LIMIT = 32_000;

function cleanImages(images) {
  const kept = [];
  let budget = MAX_DRAFT_IMAGE_CHARS;
  for (const image of Array.isArray(images) ? images : []) {
    if (typeof image !== "string") {
      continue;
    }
    const isUrl = /^https?:\/\//i.test(image);
    const isData = image.startsWith("data:image/");
    if (!isUrl && !isData) {
      continue;
    }
    if (isData && image.length > budget) {
      continue; // too big to keep: the user re-adds it, everything else survives
    }
    if (isData) {
      budget -= image.length;
    }
    kept.push(image);
  }
  return kept;
}

export function serializeDraft(draft, savedAt = Date.now()) {
  const params = {};
  for (const [name, value] of Object.entries(draft.params || {})) {
    if (["string", "number", "boolean"].includes(typeof value)) {
      params[name] = value;
    }
  }
  return JSON.stringify({
    v: 1,
    page: String(draft.page || "/"),
    model: String(draft.model || ""),
    prompt: String(draft.prompt || "").slice(0, TEXT_LIMIT),
    title: String(draft.title || "").slice(0, 200),
    n: Number.isInteger(draft.n) ? draft.n : 1,
    params,
    images: cleanImages(draft.images),
    savedAt,
  });
}

// The draft for `page`, or null when there is none, it is for another page, it is
// malformed, or it is older than `maxAgeMs` (a day by default).
export function parseDraft(text, page, now = Date.now(), maxAgeMs = 86_400_000) {
  if (!text) {
    return null;
  }
  let data;
  try {
    data = JSON.parse(text);
  } catch (_error) {
    return null;
  }
  if (!data || data.v !== 1 || data.page !== page) {
    return null;
  }
  if (typeof data.savedAt !== "number" || now - data.savedAt > maxAgeMs) {
    return null;
  }
  return {
    page: data.page,
    model: typeof data.model === "string" ? data.model : "",
    prompt: typeof data.prompt === "string" ? data.prompt : "",
    title: typeof data.title === "string" ? data.title : "",
    n: Number.isInteger(data.n) && data.n >= 1 && data.n <= 20 ? data.n : 1,
    params: data.params && typeof data.params === "object" ? data.params : {},
    images: cleanImages(data.images),
  };
}

export function isEmptyDraft(draft) {
  return !draft.prompt?.trim() && !draft.title?.trim() && !(draft.images || []).length;
}
