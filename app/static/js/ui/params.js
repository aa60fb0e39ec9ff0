// Renders a model's parameters (described by lib/catalog.js) as form controls, reads them
// back, and shows per-field errors and rule conflicts.

import { describeForm } from "../lib/catalog.js";
import { $, $$, h, setVar, uid } from "./dom.js";

function fieldShell(name, labelEl, control, help) {
  const errorId = uid("err");
  const helpId = help ? uid("help") : null;
  const wrapper = h("div", { class: "field", dataset: { field: "params." + name } },
    labelEl,
    control,
    help ? h("p", { class: "hint", id: helpId }, help) : null,
    h("p", { class: "field-error", id: errorId, hidden: true }),
    h("p", { class: "field-warning", hidden: true }),
  );
  const describedBy = [helpId, errorId].filter(Boolean).join(" ");
  for (const input of wrapper.querySelectorAll("input, select, [role=radiogroup]")) {
    input.setAttribute("aria-describedby", describedBy);
  }
  return wrapper;
}

function optionIndex(options, value) {
  return options.findIndex((option) => option.value === value);
}

function renderSegmented(desc, value, onChange) {
  const labelId = uid("lbl");
  const name = uid("p-" + desc.name);
  const group = h("div", { class: "segmented", role: "radiogroup", "aria-labelledby": labelId });
  desc.options.forEach((option, index) => {
    const input = h("input", {
      type: "radio",
      name,
      value: String(index),
      checked: option.value === value,
      on: { change: onChange },
    });
    group.append(h("label", { class: "segment", dataset: { value: String(option.value) } },
      input, h("span", {}, option.label)));
  });
  const label = h("span", { class: "label", id: labelId }, desc.label);
  return { element: fieldShell(desc.name, label, group, desc.help),
    read: () => {
      const checked = group.querySelector("input:checked");
      return checked ? desc.options[Number(checked.value)].value : null;
    },
    write: (v) => {
      const index = optionIndex(desc.options, v);
      $$("input", group).forEach((input, i) => { input.checked = i === index; });
    },
    markBlocked: (blocked) => {
      for (const segment of $$(".segment", group)) {
        const reason = blocked ? blocked[segment.dataset.value] : null;
        segment.classList.toggle("is-blocked", Boolean(reason));
        if (reason) {
          segment.title = reason;
        } else {
          segment.removeAttribute("title");
        }
      }
    },
  };
}

function renderSelect(desc, value, onChange) {
  const id = uid("p-" + desc.name);
  const select = h("select", { id, on: { change: onChange } },
    desc.options.map((option, index) =>
      h("option", { value: String(index), selected: option.value === value }, option.label)));
  const label = h("label", { class: "label", for: id }, desc.label);
  return { element: fieldShell(desc.name, label, select, desc.help),
    read: () => desc.options[Number(select.value)]?.value ?? null,
    write: (v) => {
      const index = optionIndex(desc.options, v);
      if (index >= 0) select.value = String(index);
    },
    markBlocked: (blocked) => {
      [...select.options].forEach((option, index) => {
        const reason = blocked ? blocked[String(desc.options[index].value)] : null;
        option.textContent = desc.options[index].label + (reason ? " — conflicts" : "");
        option.title = reason || "";
      });
    },
  };
}

function renderToggle(desc, value, onChange) {
  const id = uid("p-" + desc.name);
  const input = h("input", {
    type: "checkbox",
    id,
    role: "switch",
    class: "switch-input",
    checked: Boolean(value),
    on: { change: onChange },
  });
  const label = h("label", { class: "switch", for: id },
    input, h("span", { class: "switch-track", "aria-hidden": "true" }),
    h("span", { class: "switch-label" }, desc.label));
  const element = fieldShell(desc.name, null, label, desc.help);
  element.classList.add("field-toggle");
  return { element,
    read: () => input.checked,
    write: (v) => { input.checked = Boolean(v); },
    markBlocked: (blocked) => {
      const reason = blocked ? blocked[String(!input.checked)] : null;
      label.title = reason || "";
    },
  };
}

function renderInput(desc, value, onChange) {
  const id = uid("p-" + desc.name);
  const attrs = { id, on: { input: onChange } };
  if (desc.control === "number") {
    Object.assign(attrs, { type: "number", inputmode: "numeric", step: String(desc.step) });
    if (desc.min !== null) attrs.min = String(desc.min);
    if (desc.max !== null) attrs.max = String(desc.max);
  } else {
    attrs.type = "text";
    if (desc.maxLength) attrs.maxlength = String(desc.maxLength);
  }
  const input = h("input", attrs);
  input.value = value === null || value === undefined ? "" : String(value);
  const label = h("label", { class: "label", for: id }, desc.label);
  return { element: fieldShell(desc.name, label, input, desc.help),
    read: () => input.value,
    write: (v) => { input.value = v === null || v === undefined ? "" : String(v); },
    markBlocked: () => {},
  };
}

// Aspect ratios as little rectangles of that shape (image studio): "16:9" → 16 / 9.
export function ratioValue(value) {
  const match = /^(\d+(?:\.\d+)?):(\d+(?:\.\d+)?)$/.exec(String(value));
  return match ? Number(match[1]) / Number(match[2]) : null;
}

function renderRatio(desc, value, onChange) {
  const control = renderSegmented(desc, value, onChange);
  for (const segment of $$(".segment", control.element)) {
    const ratio = ratioValue(segment.dataset.value);
    const shape = h("span", { class: "ratio-shape", "aria-hidden": "true" });
    if (ratio) {
      setVar(shape, "--ar", ratio);
    } else {
      shape.classList.add("is-auto");
    }
    segment.querySelector("span").prepend(shape);
  }
  control.element.classList.add("ratio-picker");
  return control;
}

const RENDERERS = {
  ratio: renderRatio,
  segmented: renderSegmented,
  select: renderSelect,
  toggle: renderToggle,
  number: renderInput,
  text: renderInput,
};

// Renders into `container` (emptied first). Returns {read(), write(values), markBlocked()}.
// `visualRatios` draws enum aspect-ratio parameters as shapes instead of a plain list.
export function renderParams(container, model, values, onChange, { visualRatios = false } = {}) {
  container.replaceChildren();
  const controls = new Map();
  for (const desc of describeForm(model)) {
    const initial = values[desc.name] !== undefined ? values[desc.name] : desc.default;
    const isRatio = visualRatios && desc.options &&
      desc.options.filter((option) => ratioValue(option.value)).length >= 2;
    const kind = isRatio ? "ratio" : desc.control;
    const control = RENDERERS[kind](desc, initial, onChange);
    control.element.classList.add("param", "param-" + kind);
    control.element.dataset.param = desc.name;
    controls.set(desc.name, control);
    container.append(control.element);
  }
  return {
    read() {
      const raw = {};
      for (const [name, control] of controls) {
        raw[name] = control.read();
      }
      return raw;
    },
    write(next) {
      for (const [name, value] of Object.entries(next || {})) {
        controls.get(name)?.write(value);
      }
    },
    markBlocked(blocked) {
      for (const [name, control] of controls) {
        control.markBlocked(blocked[name] || null);
      }
    },
    names: () => [...controls.keys()],
  };
}

// Field errors: {field: message | [messages]} onto elements with data-field="…" inside
// `root`. Returns the messages that found no field (the page shows them above the form).
export function showFieldErrors(root, errors, { warning = false } = {}) {
  const slot = warning ? ".field-warning" : ".field-error";
  for (const wrapper of $$("[data-field]", root)) {
    const box = $(slot, wrapper);
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
    if (!warning) {
      wrapper.classList.remove("has-error");
      for (const input of $$("input, select, textarea", wrapper)) {
        input.removeAttribute("aria-invalid");
      }
    } else {
      wrapper.classList.remove("has-warning");
    }
  }
  const unplaced = [];
  for (const [field, value] of Object.entries(errors || {})) {
    const messages = Array.isArray(value) ? value : [value];
    const wrapper = field ? root.querySelector(`[data-field="${CSS.escape(field)}"]`) : null;
    const box = wrapper ? $(slot, wrapper) : null;
    if (!box) {
      unplaced.push(...messages.map((m) => (field ? field + ": " : "") + m));
      continue;
    }
    box.textContent = messages.join(" ");
    box.hidden = false;
    wrapper.classList.add(warning ? "has-warning" : "has-error");
    if (!warning) {
      for (const input of $$("input, select, textarea", wrapper)) {
        input.setAttribute("aria-invalid", "true");
      }
    }
  }
  return unplaced;
}

export function focusFirstError(root) {
  const wrapper = root.querySelector(".has-error");
  const target = wrapper?.querySelector("input:not([type=hidden]), select, textarea, button");
  if (target) {
    target.focus();
  }
}
