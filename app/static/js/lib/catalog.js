// The create form, described from the model catalog (GET /api/v1/models).
//
// Pure functions, no DOM: the pages render what these return, and Node's test runner checks
// them (js_tests/catalog.test.js). The rules mirror app/core/catalog/validation.py so a
// request the server would refuse is flagged before it is sent; the server stays the judge.

export const MAX_BATCH = 20;

// Enums with at most this many options (and short labels) render as a segmented control:
// every choice visible at once, one click to change. Longer lists become a <select>.
const SEGMENTED_MAX_OPTIONS = 4;
const SEGMENTED_MAX_LABEL = 18;

export function groupModels(models) {
  const groups = { video: [], image: [] };
  for (const model of models || []) {
    if (groups[model.kind]) {
      groups[model.kind].push(model);
    }
  }
  return groups;
}

export function findModel(models, id) {
  return (models || []).find((model) => model.id === id) || null;
}

// One control descriptor per parameter: what to render and with which constraints.
export function controlFor(param) {
  const base = {
    name: param.name,
    label: param.label || param.name,
    help: param.help || "",
    required: Boolean(param.required),
    default: param.default === undefined ? null : param.default,
  };
  switch (param.type) {
    case "enum": {
      const options = (param.allowed || []).map((item) => ({
        value: item.value,
        label: item.label === undefined || item.label === null ? String(item.value) : item.label,
      }));
      const short = options.every((option) => option.label.length <= SEGMENTED_MAX_LABEL);
      const control = options.length <= SEGMENTED_MAX_OPTIONS && short ? "segmented" : "select";
      return { ...base, control, options };
    }
    case "boolean":
      return { ...base, control: "toggle", default: Boolean(param.default) };
    case "integer":
      return { ...base, control: "number", min: param.min ?? null, max: param.max ?? null, step: 1 };
    case "number":
      return {
        ...base,
        control: "number",
        min: param.min ?? null,
        max: param.max ?? null,
        step: "any",
      };
    default:
      return { ...base, control: "text", maxLength: param.max_length ?? null };
  }
}

export function describeForm(model) {
  return (model.parameters || []).map(controlFor);
}

export function defaultValues(model) {
  const values = {};
  for (const param of model.parameters || []) {
    if (param.default !== undefined && param.default !== null) {
      values[param.name] = param.default;
    }
  }
  return values;
}

function sameValue(a, b) {
  return typeof a === typeof b && a === b;
}

function matches(condition, value) {
  const options = Array.isArray(condition) ? condition : [condition];
  return options.some((option) => sameValue(option, value));
}

// A form control's raw value (always a string, or a boolean for toggles) read as the
// parameter's type. Returns {value} or {error}; an empty input means "use the default".
export function coerceValue(param, raw) {
  if (raw === undefined || raw === null || raw === "") {
    return { value: param.default ?? null };
  }
  if (param.type === "enum") {
    const allowed = (param.allowed || []).map((item) => item.value);
    const exact = allowed.find((value) => sameValue(value, raw));
    if (exact !== undefined) {
      return { value: exact };
    }
    const text = String(raw).trim().toLowerCase();
    const loose = allowed.find((value) => String(value).toLowerCase() === text);
    if (loose !== undefined) {
      return { value: loose };
    }
    return { error: "must be one of " + allowed.map(String).join(", ") };
  }
  if (param.type === "boolean") {
    if (typeof raw === "boolean") {
      return { value: raw };
    }
    const word = String(raw).trim().toLowerCase();
    if (["true", "1", "yes", "on"].includes(word)) {
      return { value: true };
    }
    if (["false", "0", "no", "off"].includes(word)) {
      return { value: false };
    }
    return { error: "must be true or false" };
  }
  if (param.type === "integer" || param.type === "number") {
    const text = String(raw).trim();
    const isInt = /^[+-]?\d+$/.test(text);
    if (param.type === "integer" && !isInt) {
      return { error: "must be a whole number" };
    }
    const number = Number(text);
    if (!Number.isFinite(number)) {
      return { error: "must be a number" };
    }
    if (param.min !== undefined && param.min !== null && number < param.min) {
      return { error: "must be at least " + param.min };
    }
    if (param.max !== undefined && param.max !== null && number > param.max) {
      return { error: "must be at most " + param.max };
    }
    return { value: number };
  }
  const text = String(raw);
  if (param.max_length && text.length > param.max_length) {
    return { error: "must be at most " + param.max_length + " characters long" };
  }
  return { value: text };
}

// The generation mode the server will pick for this many input images, or the error it
// would report (same wording as the server's 422).
export function resolveMode(model, imagesCount) {
  const caps = model.capabilities || {};
  const modes = model.modes || [];
  const max = caps.max_reference_images || 0;
  if (imagesCount === 0) {
    const textMode = model.kind === "video" ? "text_to_video" : "text_to_image";
    if (modes.includes(textMode)) {
      return { mode: textMode };
    }
    return { error: model.display_name + " needs at least one input image" };
  }
  if (max === 0) {
    return { error: model.display_name + " does not accept input images" };
  }
  if (imagesCount > max) {
    return {
      error: model.display_name + " accepts at most " + max + (max === 1 ? " image" : " images"),
    };
  }
  if (model.kind === "image") {
    return { mode: "image_edit" };
  }
  if (imagesCount === 2 && caps.frames_to_video) {
    return { mode: "frames_to_video" };
  }
  if (caps.image_to_video) {
    return { mode: "image_to_video" };
  }
  return { error: model.display_name + " needs exactly 2 images: first and last frame" };
}

export function acceptsImages(model) {
  return (model.capabilities?.max_reference_images || 0) > 0;
}

export function imageHint(model) {
  const caps = model.capabilities || {};
  const max = caps.max_reference_images || 0;
  if (max === 0) {
    return "This model works from the prompt only.";
  }
  if (model.kind === "video") {
    if (caps.frames_to_video && !caps.text_to_video && !caps.image_to_video) {
      return "Add the first and the last frame.";
    }
    if (caps.frames_to_video) {
      return caps.text_to_video
        ? "Optional: one image as the first frame, or two for first and last frame."
        : "One image as the first frame, or two for first and last frame.";
    }
    return caps.text_to_video ? "Optional: one image as the first frame." : "Add one image.";
  }
  const optional = caps.text_to_image ? "Optional: " : "";
  return optional + "up to " + max + (max === 1 ? " reference image" : " reference images") +
    (caps.mask ? ", and a mask to edit part of it." : ".");
}

function ruleApplies(rule, values, mode) {
  if (rule.modes && rule.modes.length && !rule.modes.includes(mode)) {
    return false;
  }
  return Object.entries(rule.when || {}).every(
    ([name, condition]) => name in values && matches(condition, values[name]),
  );
}

// Cross-field rule violations for these (already coerced) values, shaped like the server's
// 422 details: {field, message, fields, allowed?}.
export function ruleViolations(model, values, mode) {
  const violations = [];
  for (const rule of model.rules || []) {
    if (!ruleApplies(rule, values, mode)) {
      continue;
    }
    const involved = Object.keys(rule.when || {}).map((name) => "params." + name);
    if (rule.modes && rule.modes.length) {
      involved.push("images");
    }
    const constrained = [...new Set([...Object.keys(rule.forbid || {}),
      ...Object.keys(rule.allow || {})])];
    for (const name of constrained) {
      if (!(name in values)) {
        continue;
      }
      const value = values[name];
      const forbidden = (rule.forbid || {})[name] || [];
      const only = (rule.allow || {})[name];
      const bad = matches(forbidden, value) || (only !== undefined && !matches(only, value));
      if (!bad) {
        continue;
      }
      const violation = {
        field: "params." + name,
        message: rule.message,
        fields: [...involved, "params." + name],
      };
      const spec = (model.parameters || []).find((param) => param.name === name);
      if (spec && spec.allowed) {
        const base = only !== undefined ? only : spec.allowed.map((item) => item.value);
        violation.allowed = base.filter((candidate) => !matches(forbidden, candidate));
      }
      violations.push(violation);
    }
  }
  return violations;
}

// For every enum option (and boolean), whether choosing it would break a rule given the
// other current values: the form marks those choices before the user picks them.
// Returns {paramName: {String(value): message}}.
export function blockedChoices(model, values, mode) {
  const blocked = {};
  for (const param of model.parameters || []) {
    let candidates = [];
    if (param.type === "enum") {
      candidates = (param.allowed || []).map((item) => item.value);
    } else if (param.type === "boolean") {
      candidates = [true, false];
    } else {
      continue;
    }
    for (const candidate of candidates) {
      const trial = { ...values, [param.name]: candidate };
      const hit = ruleViolations(model, trial, mode).find(
        (violation) => violation.fields.includes("params." + param.name),
      );
      if (hit) {
        blocked[param.name] = blocked[param.name] || {};
        blocked[param.name][String(candidate)] = hit.message;
      }
    }
  }
  return blocked;
}

// Every rule of the model, in words, for the "rules" note under the form.
export function describeRules(model) {
  return (model.rules || []).map((rule) => rule.message);
}

// Client-side check of a whole create request. `raw` maps parameter names to the controls'
// raw values. Returns {values, errors: {field: message}} with coerced values.
export function validateForm(model, { raw = {}, prompt = "", imagesCount = 0, n = 1 } = {}) {
  const errors = {};
  const values = {};
  for (const param of model.parameters || []) {
    const result = coerceValue(param, raw[param.name]);
    if (result.error) {
      errors["params." + param.name] = result.error;
    } else if (result.value !== null && result.value !== undefined) {
      values[param.name] = result.value;
    } else if (param.required) {
      errors["params." + param.name] = "is required";
    }
  }
  if (!String(prompt).trim()) {
    errors.prompt = "Describe what you want to see.";
  }
  const count = Number(n);
  if (!Number.isInteger(count) || count < 1 || count > MAX_BATCH) {
    errors.n = "Between 1 and " + MAX_BATCH + ".";
  }
  const resolved = resolveMode(model, imagesCount);
  if (resolved.error) {
    errors.images = resolved.error;
  } else if (Object.keys(errors).length === 0) {
    for (const violation of ruleViolations(model, values, resolved.mode)) {
      errors[violation.field] = errors[violation.field] || violation.message;
    }
  }
  return { values, errors, mode: resolved.mode || null };
}

export function buildCreateBody({ model, prompt, title, values, images, n, tags }) {
  const body = { model: model.id, prompt: String(prompt).trim(), params: { ...values } };
  const cleanTitle = (title || "").trim();
  if (cleanTitle) {
    body.title = cleanTitle;
  }
  if (images && images.length) {
    body.images = [...images];
  }
  const count = Number(n) || 1;
  if (count !== 1) {
    body.n = count;
  }
  if (tags && tags.length) {
    body.tags = [...tags];
  }
  return body;
}

// The server's 422 `details` spread onto form fields: {field: [messages]}. A rule names every
// field involved (`fields`), so the message shows next to each of them. Fields the form does
// not have end up under "" (shown above the form).
export function fieldErrors(details, knownFields = null) {
  const result = {};
  const add = (field, message) => {
    const key = knownFields && !knownFields.includes(field) ? "" : field;
    result[key] = result[key] || [];
    if (!result[key].includes(message)) {
      result[key].push(message);
    }
  };
  if (!Array.isArray(details)) {
    return result;
  }
  for (const detail of details) {
    if (!detail || typeof detail !== "object") {
      continue;
    }
    const field = normaliseField(detail.field || "");
    let message = detail.message || "is invalid";
    if (Array.isArray(detail.allowed) && detail.allowed.length && !/one of/.test(message)) {
      message += " (allowed: " + detail.allowed.map(String).join(", ") + ")";
    }
    const targets = Array.isArray(detail.fields) && detail.fields.length
      ? detail.fields.map(normaliseField)
      : [field];
    for (const target of targets) {
      add(target, message);
    }
  }
  return result;
}

function normaliseField(field) {
  // "image[0]" (multipart uploads) and "images.0" both belong to the images picker.
  if (/^images?(\[\d+\]|\.\d+)?$/.test(field)) {
    return "images";
  }
  return field;
}
