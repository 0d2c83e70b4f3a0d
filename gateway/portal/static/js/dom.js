// Building the page from data without ever parsing it as HTML: every value
// the platform returns (titles, names, CDA text) becomes a text node, so a
// document cannot inject markup or script into the portal.

/**
 * h("p", {class: "x"}, "text", child) → an element. Attributes are set with
 * setAttribute (on* handlers are refused: events go through `on`), children
 * are nodes or strings (strings become text nodes), null/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) throw new Error("use on() for events");
    if (key === "hidden" || key === "required" || key === "disabled" || key === "checked"
        || key === "selected" || key === "multiple" || key === "open") {
      if (value) el.setAttribute(key, "");
      continue;
    }
    el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function on(el, event, handler) {
  el.addEventListener(event, handler);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let counter = 0;
/** A page-unique id for label/aria wiring. */
export function uid(prefix = "id") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * A labelled form field: the label is a real <label for>, the hint and the
 * error are tied to the control with aria-describedby so a screen reader
 * reads them with the field.
 */
export function field({ label, name, type = "text", value = "", hint = "", required = false,
  autocomplete = null, inputmode = null, options = null, rows = null, pattern = null,
  maxlength = null }) {
  const id = uid(name);
  const hintId = hint ? `${id}-aide` : null;
  const errorId = `${id}-erreur`;
  let control;
  if (options) {
    control = h("select", { id, name, required });
    for (const [optValue, optLabel] of options) {
      control.append(h("option", { value: optValue, selected: optValue === value }, optLabel));
    }
  } else if (rows) {
    control = h("textarea", { id, name, rows, required, maxlength });
    control.value = value;
  } else {
    control = h("input", { id, name, type, required, autocomplete, inputmode, pattern, maxlength });
    if (type === "checkbox") control.checked = Boolean(value);
    else control.value = value;
  }
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const wrapper = h("div", { class: type === "checkbox" ? "field field-check" : "field" });
  const labelEl = h("label", { for: id }, label, required ? h("span", { class: "requis" }, " (obligatoire)") : null);
  if (type === "checkbox") {
    wrapper.append(control, labelEl);
  } else {
    wrapper.append(labelEl);
  }
  if (hint) wrapper.append(h("p", { class: "aide", id: hintId }, hint));
  if (type !== "checkbox") wrapper.append(control);
  wrapper.append(h("p", { class: "erreur-champ", id: errorId, hidden: true }));
  return wrapper;
}

/** Shows `message` under the field named `name` of `form` and marks it invalid. */
export function fieldError(form, name, message) {
  const control = form.elements.namedItem(name);
  if (!control) return;
  const errorEl = document.getElementById(`${control.id}-erreur`);
  control.setAttribute("aria-invalid", "true");
  if (errorEl) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }
}

export function clearErrors(form) {
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const errorEl of form.querySelectorAll(".erreur-champ")) {
    errorEl.textContent = "";
    errorEl.hidden = true;
  }
  const summary = form.querySelector(".erreur-formulaire");
  if (summary) {
    summary.textContent = "";
    summary.hidden = true;
  }
}

/**
 * The form-level error: a role="alert" paragraph (announced at once) above
 * the submit button.
 */
export function formError(form, message) {
  let summary = form.querySelector(".erreur-formulaire");
  if (!summary) {
    summary = h("p", { class: "erreur-formulaire", role: "alert" });
    form.prepend(summary);
  }
  summary.textContent = message;
  summary.hidden = false;
}

export function formatDate(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleDateString("fr-FR", { day: "numeric", month: "long", year: "numeric" });
}

export function formatDateTime(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleString("fr-FR", {
    day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

/** A {year, month, day} message (records' and history's Date) as French text. */
export function formatPartialDate(d) {
  if (!d || !d.year) return "";
  if (d.month && d.day) return formatDate(`${d.year}-${String(d.month).padStart(2, "0")}-${String(d.day).padStart(2, "0")}T12:00:00Z`);
  if (d.month) return `${String(d.month).padStart(2, "0")}/${d.year}`;
  return String(d.year);
}

/** "2026-03-14" from an <input type=date> → {year, month, day}, or null. */
export function parseDateInput(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  if (!match) return null;
  return { year: Number(match[1]), month: Number(match[2]), day: Number(match[3]) };
}
