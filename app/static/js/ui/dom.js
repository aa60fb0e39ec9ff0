// A tiny element builder. Text always goes in as text nodes (never parsed as HTML), so prompts,
// titles and log bodies cannot inject markup.

export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  applyProps(element, props);
  append(element, children);
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function applyProps(element, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name === "class") {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "text") {
      element.textContent = value;
    } else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) {
        element.addEventListener(event, handler);
      }
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && !name.startsWith("aria") && name !== "role" &&
               typeof value !== "string") {
      element[name] = value; // properties: checked, disabled, value, hidden, …
    } else if (name === "value") {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(element) {
  while (element.firstChild) {
    element.firstChild.remove();
  }
  return element;
}

export function replaceChildren(element, ...children) {
  clear(element);
  return append(element, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

let idCounter = 0;
export function uid(prefix = "id") {
  idCounter += 1;
  return prefix + "-" + idCounter;
}

// The only way values reach CSS from script: custom properties through the CSSOM, which the
// Content-Security-Policy allows (style="" attributes it does not).
export function setVar(element, name, value) {
  element.style.setProperty(name, String(value));
}

export function debounce(fn, wait = 300) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

export function icon(name) {
  // Inline SVG icons from one sprite file (same origin, so the CSP allows it).
  const el = svg("svg", { class: "icon", "aria-hidden": "true", focusable: "false" },
    svg("use", { href: "/static/img/icons.svg#" + name }));
  return el;
}
