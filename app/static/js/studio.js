// Studio (/): the create panel generated from the model catalog, and the live queue.

import { api, ApiError, errorMessage, onSessionExpired } from "./ui/api.js";
import { $, h } from "./ui/dom.js";
import { initShell } from "./ui/shell.js";
import { toast } from "./ui/toast.js";
import { createRefPicker } from "./ui/refs.js";
import { focusFirstError, renderParams, showFieldErrors } from "./ui/params.js";
import { createLiveQueue } from "./ui/live-queue.js";
import {
  acceptsImages, blockedChoices, buildCreateBody, coerceValue, defaultValues, describeRules,
  fieldErrors, findModel, groupModels, imageHint, resolveMode, ruleViolations, validateForm,
} from "./lib/catalog.js";
import { DRAFT_KEY, parseDraft, serializeDraft } from "./lib/draft.js";
import { parseTags } from "./lib/filters.js";

const PAGE = "/";
const KIND_LABELS = { video: "Video", image: "Image" };

const state = { models: [], model: null, params: null, refs: null, queue: null };

const form = $("#create-form");
const modelSelect = $("#model");
const promptInput = $("#prompt");
const titleInput = $("#title");
const countInput = $("#count");
const tagsInput = $("#tags");
const submit = $("#submit");
const formError = $("#form-error");

function showFormError(messages) {
  const list = (Array.isArray(messages) ? messages : [messages]).filter(Boolean);
  formError.replaceChildren(...list.map((m) => h("p", {}, m)));
  formError.hidden = list.length === 0;
}

function currentValues() {
  const raw = state.params.read();
  const values = {};
  for (const param of state.model.parameters || []) {
    const result = coerceValue(param, raw[param.name]);
    if (!result.error && result.value !== null && result.value !== undefined) {
      values[param.name] = result.value;
    }
  }
  return { raw, values };
}

// Cross-field rules, before submit: options that would conflict are marked, and a conflict
// the current choices already have is shown on every field involved.
function refreshRules() {
  const { values } = currentValues();
  const resolved = resolveMode(state.model, state.refs.count());
  const mode = resolved.mode || null;
  state.params.markBlocked(blockedChoices(state.model, values, mode));
  const warnings = {};
  if (mode) {
    for (const violation of ruleViolations(state.model, values, mode)) {
      for (const field of violation.fields) {
        warnings[field] = violation.message;
      }
    }
  }
  showFieldErrors(form, warnings, { warning: true });
  const conflict = Object.keys(warnings).length > 0;
  submit.disabled = conflict;
  $("#submit-hint").textContent = conflict ? "Resolve the conflict above to continue." : "";
  updateSubmitLabel();
}

function updateSubmitLabel() {
  const n = Number(countInput.value) || 1;
  const noun = state.model?.kind === "image" ? "image" : "video";
  submit.querySelector(".button-label").textContent =
    "Generate " + (n > 1 ? n + " " + noun + "s" : noun);
}

function fillModelSelect() {
  const groups = groupModels(state.models);
  modelSelect.replaceChildren(...Object.entries(groups)
    .filter(([, models]) => models.length)
    .map(([kind, models]) => h("optgroup", { label: KIND_LABELS[kind] + " models" },
      models.map((model) => h("option", { value: model.id }, model.display_name)))));
}

function selectModel(id, carry = {}) {
  const model = findModel(state.models, id) || state.models[0];
  state.model = model;
  modelSelect.value = model.id;
  $("#model-description").textContent = model.description || "";
  $("#model-kind").textContent = KIND_LABELS[model.kind];
  $("#model-kind").className = "chip tone-" + (model.kind === "video" ? "info" : "accent");
  // Keep the values the new model also accepts; the rest start at its defaults.
  const values = defaultValues(model);
  for (const param of model.parameters || []) {
    if (param.name in carry && !coerceValue(param, carry[param.name]).error) {
      values[param.name] = coerceValue(param, carry[param.name]).value;
    }
  }
  state.params = renderParams($("#params"), model, values, refreshRules);
  $("#params-section").hidden = (model.parameters || []).length === 0;
  const rules = describeRules(model);
  $("#rules").replaceChildren(...rules.map((text) => h("li", {}, text)));
  $("#rules-box").hidden = rules.length === 0;
  const max = model.capabilities?.max_reference_images || 0;
  state.refs.setMax(max);
  state.refs.setHint(imageHint(model));
  state.refs.element.hidden = !acceptsImages(model);
  state.refs.setError("");
  showFieldErrors(form, {});
  showFormError([]);
  refreshRules();
}

function saveDraft() {
  if (!state.model) {
    return;
  }
  const refs = state.refs.items();
  // Files are read synchronously only via their cached data URI (if any): a draft is saved
  // as the page unloads, so URLs and already-encoded images are what can be kept.
  const images = refs.map((item) => item.url || item.dataUri).filter(Boolean);
  sessionStorage.setItem(DRAFT_KEY, serializeDraft({
    page: PAGE,
    model: state.model.id,
    prompt: promptInput.value,
    title: titleInput.value,
    n: Number(countInput.value) || 1,
    params: currentValues().values,
    images,
  }));
}

function restoreDraft() {
  const draft = parseDraft(sessionStorage.getItem(DRAFT_KEY), PAGE);
  sessionStorage.removeItem(DRAFT_KEY);
  if (!draft) {
    return false;
  }
  selectModel(draft.model, draft.params);
  promptInput.value = draft.prompt;
  titleInput.value = draft.title;
  countInput.value = String(draft.n);
  state.refs.restore(draft.images);
  updateCounter();
  refreshRules();
  toast("Your draft was restored.", { tone: "info" });
  return true;
}

function updateCounter() {
  $("#prompt-count").textContent = promptInput.value.length.toLocaleString() + " / 32,000";
}

async function onSubmit(event) {
  event.preventDefault();
  showFormError([]);
  const { raw } = currentValues();
  const result = validateForm(state.model, {
    raw,
    prompt: promptInput.value,
    imagesCount: state.refs.count(),
    n: Number(countInput.value),
  });
  const unplaced = showFieldErrors(form, result.errors);
  if (Object.keys(result.errors).length) {
    showFormError(unplaced);
    focusFirstError(form);
    return;
  }
  submit.disabled = true;
  submit.classList.add("is-busy");
  try {
    // Encode files now so a draft saved on a 401 can keep them.
    const references = await state.refs.references();
    state.refs.items().forEach((item, i) => {
      if (item.source === "file") item.dataUri = references[i];
    });
    const body = buildCreateBody({
      model: state.model,
      prompt: promptInput.value,
      title: titleInput.value,
      values: result.values,
      images: references,
      n: Number(countInput.value),
      tags: parseTags(tagsInput.value),
    });
    const created = await api.post(`/api/v1/${state.model.kind}s`, body);
    const tasks = Array.isArray(created) ? created : [created];
    state.queue.add(tasks);
    toast(tasks.length > 1 ? tasks.length + " tasks queued" : "Queued — watch it in the queue",
      { tone: "success", timeout: 3000 });
  } catch (error) {
    if (error instanceof ApiError && error.status === 422) {
      const known = ["prompt", "title", "n", "images", "tags", "model",
        ...state.params.names().map((name) => "params." + name)];
      const errors = fieldErrors(error.details, known);
      const unplacedMessages = [...(errors[""] || [])];
      delete errors[""];
      unplacedMessages.push(...showFieldErrors(form, errors));
      showFormError(unplacedMessages.length ? unplacedMessages : Object.keys(errors).length
        ? [] : [error.message]);
      focusFirstError(form);
    } else if (!(error instanceof ApiError && error.status === 401)) {
      showFormError(errorMessage(error));
    }
  } finally {
    submit.classList.remove("is-busy");
    refreshRules();
  }
}

async function main() {
  onSessionExpired(saveDraft);
  state.refs = createRefPicker({
    onChange: () => {
      state.refs.setError("");
      refreshRules();
    },
    onError: (message) => state.refs.setError(message),
  });
  $("#refs-slot").replaceWith(state.refs.element);
  await initShell();
  const catalog = await api.get("/api/v1/models");
  state.models = catalog.data;
  fillModelSelect();
  const wanted = new URLSearchParams(window.location.search).get("model");
  selectModel(wanted || state.models[0]?.id);
  restoreDraft();
  updateCounter();
  modelSelect.addEventListener("change", () => selectModel(modelSelect.value,
    currentValues().values));
  promptInput.addEventListener("input", updateCounter);
  countInput.addEventListener("input", updateSubmitLabel);
  form.addEventListener("submit", onSubmit);
  form.classList.remove("is-loading");
  state.queue = createLiveQueue({
    list: $("#queue"),
    empty: $("#queue-empty"),
    status: $("#live-status"),
    counter: $("#queue-count"),
  });
  await state.queue.start();
}

main().catch((error) => {
  if (!(error instanceof ApiError && error.status === 401)) {
    showFormError(errorMessage(error));
  }
});
