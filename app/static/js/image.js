// Image studio (/image): text to image, and edits with several reference images and a mask
// painted on a canvas over the first one (sent as multipart to /api/v1/images/edits).

import { api, ApiError, errorMessage, onSessionExpired } from "./ui/api.js";
import { $, h } from "./ui/dom.js";
import { initShell } from "./ui/shell.js";
import { toast } from "./ui/toast.js";
import { createRefPicker } from "./ui/refs.js";
import { focusFirstError, renderParams, showFieldErrors } from "./ui/params.js";
import { createLiveQueue } from "./ui/live-queue.js";
import {
  blockedChoices, coerceValue, defaultValues, describeRules, fieldErrors, findModel, imageHint,
  resolveMode, ruleViolations, validateForm,
} from "./lib/catalog.js";
import { brushInImagePixels, maskFromStrokes, paintedFraction, toImagePoint } from "./lib/mask.js";
import { DRAFT_KEY, parseDraft, serializeDraft } from "./lib/draft.js";

const PAGE = "/image";
const MODE_LABELS = { text_to_image: "Text to image", image_edit: "Edit" };

const state = { models: [], model: null, params: null, refs: null, queue: null, erase: false,
  painted: false, stageFile: null };

const form = $("#image-form");
const modelSelect = $("#model");
const promptInput = $("#prompt");
const titleInput = $("#title");
const countInput = $("#count");
const submit = $("#submit");
const canvas = $("#mask-canvas");
const stageImage = $("#stage-image");

function showFormError(messages) {
  const list = (Array.isArray(messages) ? messages : [messages]).filter(Boolean);
  $("#form-error").replaceChildren(...list.map((m) => h("p", {}, m)));
  $("#form-error").hidden = list.length === 0;
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

function maskEnabled() {
  return Boolean(state.model?.capabilities?.mask) && state.refs.count() > 0;
}

function refresh() {
  const { values } = currentValues();
  const resolved = resolveMode(state.model, state.refs.count());
  const mode = resolved.mode || null;
  $("#mode-chip").textContent = mode ? MODE_LABELS[mode] : "Needs an image";
  state.params.markBlocked(blockedChoices(state.model, values, mode));
  const warnings = {};
  if (mode) {
    for (const violation of ruleViolations(state.model, values, mode)) {
      for (const field of violation.fields) warnings[field] = violation.message;
    }
  }
  showFieldErrors(form, warnings, { warning: true });
  submit.disabled = Object.keys(warnings).length > 0;
  const n = Number(countInput.value) || 1;
  const verb = mode === "image_edit" ? "Edit" : "Generate";
  submit.querySelector(".button-label").textContent =
    verb + " " + (n > 1 ? n + " images" : "image");
  updateStage();
}

// ---- Mask canvas ---------------------------------------------------------------------------

function updateStage() {
  const files = state.refs.files();
  const first = files[0] || null;
  $("#mask-tools").hidden = !maskEnabled();
  $("#mask-hint").hidden = !state.model?.capabilities?.mask;
  $("#stage-empty").hidden = Boolean(first);
  $("#stage-inner").hidden = !first;
  canvas.hidden = !maskEnabled();
  if (!state.model?.capabilities?.mask) {
    $("#mask-state").textContent = "Not supported by this model";
  } else {
    $("#mask-state").textContent = state.painted ? "Mask painted" : first ? "No mask" : "";
  }
  if (first !== state.stageFile) {
    state.stageFile = first;
    state.painted = false;
    if (first) {
      stageImage.src = URL.createObjectURL(first);
    } else {
      stageImage.removeAttribute("src");
    }
  }
}

stageImage.addEventListener("load", () => {
  canvas.width = stageImage.naturalWidth;
  canvas.height = stageImage.naturalHeight;
  clearMask();
});

function clearMask() {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  state.painted = false;
  updateStage();
}

function wireCanvas() {
  const ctx = canvas.getContext("2d");
  let drawing = false;
  let last = null;
  const stroke = (event) => {
    const rect = canvas.getBoundingClientRect();
    const point = toImagePoint(event.clientX, event.clientY, rect, canvas.width, canvas.height);
    ctx.globalCompositeOperation = state.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = "rgb(236 72 153)";
    ctx.fillStyle = "rgb(236 72 153)";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = brushInImagePixels(Number($("#brush-size").value), rect, canvas.width);
    ctx.beginPath();
    if (last) {
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(point.x, point.y);
      ctx.stroke();
    } else {
      ctx.arc(point.x, point.y, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
    }
    last = point;
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = null;
    canvas.setPointerCapture(event.pointerId);
    stroke(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (drawing) stroke(event);
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    last = null;
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    state.painted = paintedFraction(data) > 0;
    updateStage();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  const setTool = (erase) => {
    state.erase = erase;
    $("#tool-paint").setAttribute("aria-pressed", String(!erase));
    $("#tool-erase").setAttribute("aria-pressed", String(erase));
  };
  $("#tool-paint").addEventListener("click", () => setTool(false));
  $("#tool-erase").addEventListener("click", () => setTool(true));
  $("#mask-clear").addEventListener("click", clearMask);
}

// The mask PNG: the first image's size, transparent where painted, opaque elsewhere.
function maskBlob() {
  const painted = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const image = new ImageData(maskFromStrokes(painted.data), canvas.width, canvas.height);
  out.getContext("2d").putImageData(image, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// ---- Models and form -------------------------------------------------------------------------

function selectModel(id, carry = {}) {
  const model = findModel(state.models, id) || state.models[0];
  state.model = model;
  modelSelect.value = model.id;
  $("#model-description").textContent = model.description || "";
  const values = defaultValues(model);
  for (const param of model.parameters || []) {
    const result = param.name in carry ? coerceValue(param, carry[param.name]) : null;
    if (result && !result.error) values[param.name] = result.value;
  }
  state.params = renderParams($("#params"), model, values, refresh, { visualRatios: true });
  $("#params-section").hidden = !(model.parameters || []).length;
  const rules = describeRules(model);
  $("#rules").replaceChildren(...rules.map((text) => h("li", {}, text)));
  $("#rules-box").hidden = !rules.length;
  state.refs.setMax(model.capabilities?.max_reference_images || 0);
  state.refs.setHint(imageHint(model));
  state.refs.element.hidden = !model.capabilities?.image_edit;
  showFieldErrors(form, {});
  showFormError([]);
  refresh();
}

function saveDraft() {
  if (!state.model) return;
  sessionStorage.setItem(DRAFT_KEY, serializeDraft({
    page: PAGE,
    model: state.model.id,
    prompt: promptInput.value,
    title: titleInput.value,
    n: Number(countInput.value) || 1,
    params: currentValues().values,
    images: state.refs.items().map((item) => item.dataUri).filter(Boolean),
  }));
}

function restoreDraft() {
  const draft = parseDraft(sessionStorage.getItem(DRAFT_KEY), PAGE);
  sessionStorage.removeItem(DRAFT_KEY);
  if (!draft) return;
  selectModel(draft.model, draft.params);
  promptInput.value = draft.prompt;
  titleInput.value = draft.title;
  countInput.value = String(draft.n);
  state.refs.restore(draft.images);
  refresh();
  toast("Your draft was restored.", { tone: "info" });
}

async function onSubmit(event) {
  event.preventDefault();
  showFormError([]);
  const n = Number(countInput.value);
  const result = validateForm(state.model, { raw: currentValues().raw, prompt: promptInput.value,
    imagesCount: state.refs.count(), n });
  const unplaced = showFieldErrors(form, result.errors);
  if (Object.keys(result.errors).length) {
    showFormError(unplaced);
    focusFirstError(form);
    return;
  }
  submit.disabled = true;
  submit.classList.add("is-busy");
  try {
    const refs = await state.refs.references();
    state.refs.items().forEach((item, i) => { item.dataUri = refs[i]; });
    let created;
    if (state.refs.count() > 0) {
      const data = new FormData();
      data.append("model", state.model.id);
      data.append("prompt", promptInput.value.trim());
      data.append("n", String(n));
      if (titleInput.value.trim()) data.append("title", titleInput.value.trim());
      data.append("params", JSON.stringify(result.values));
      state.refs.files().forEach((file, i) => data.append("image[]", file, file.name || `ref-${i}.png`));
      if (maskEnabled() && state.painted) {
        data.append("mask", await maskBlob(), "mask.png");
      }
      created = await api.form("/api/v1/images/edits", data);
    } else {
      const body = { model: state.model.id, prompt: promptInput.value.trim(),
        params: result.values, n };
      if (titleInput.value.trim()) body.title = titleInput.value.trim();
      created = await api.post("/api/v1/images", body);
    }
    const tasks = Array.isArray(created) ? created : [created];
    state.queue.add(tasks);
    toast(tasks.length > 1 ? tasks.length + " images queued" : "Queued", { tone: "success",
      timeout: 3000 });
  } catch (error) {
    if (error instanceof ApiError && error.status === 422) {
      const known = ["prompt", "title", "n", "images", "mask", "model",
        ...state.params.names().map((name) => "params." + name)];
      const errors = fieldErrors(error.details, known);
      const rest = [...(errors[""] || [])];
      delete errors[""];
      if (errors.mask) {
        rest.push("Mask: " + errors.mask.join(" "));
        delete errors.mask;
      }
      rest.push(...showFieldErrors(form, errors));
      showFormError(rest.length ? rest : Object.keys(errors).length ? [] : [error.message]);
      focusFirstError(form);
    } else if (!(error instanceof ApiError && error.status === 401)) {
      showFormError(errorMessage(error));
    }
  } finally {
    submit.classList.remove("is-busy");
    refresh();
  }
}

async function main() {
  onSessionExpired(saveDraft);
  state.refs = createRefPicker({ allowUrls: false, label: "Reference images",
    onChange: () => { state.refs.setError(""); refresh(); },
    onError: (message) => state.refs.setError(message) });
  $("#refs-slot").replaceWith(state.refs.element);
  wireCanvas();
  await initShell();
  const catalog = await api.get("/api/v1/models?kind=image");
  state.models = catalog.data;
  modelSelect.replaceChildren(...state.models.map((model) => h("option", { value: model.id },
    model.display_name + (model.capabilities?.image_edit ? " · edits" : ""))));
  const wanted = new URLSearchParams(window.location.search).get("model");
  const editing = state.models.find((model) => model.capabilities?.mask);
  selectModel(wanted || editing?.id || state.models[0]?.id);
  restoreDraft();
  modelSelect.addEventListener("change", () => selectModel(modelSelect.value,
    currentValues().values));
  countInput.addEventListener("input", refresh);
  form.addEventListener("submit", onSubmit);
  form.classList.remove("is-loading");
  state.queue = createLiveQueue({ list: $("#queue"), empty: $("#queue-empty"),
    status: $("#live-status"), counter: $("#queue-count"), kinds: ["image"], limit: 12 });
  await state.queue.start();
}

main().catch((error) => {
  if (!(error instanceof ApiError && error.status === 401)) showFormError(errorMessage(error));
});
