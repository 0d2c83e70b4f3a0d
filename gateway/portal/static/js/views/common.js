// Pieces every page uses: forms that submit through the API and report
// errors where the patient looks (and where a screen reader reads).

import { h, on, clearErrors, formError, fieldError } from "../dom.js";
import { errorMessage } from "../labels.js";

/**
 * A <form> whose submit runs `action(form)`: the button is disabled while it
 * runs, an API error is shown (and announced) at the top of the form, field
 * violations under their fields, and the focus goes to the error.
 */
export function form({ label, submit, action, children, secondary = false, novalidate = true }) {
  const button = h("button", { type: "submit", class: secondary ? "bouton-secondaire" : null }, submit);
  const el = h("form", { "aria-label": label, novalidate }, children, h("div", { class: "actions" }, button));
  on(el, "submit", async (event) => {
    event.preventDefault();
    clearErrors(el);
    button.disabled = true;
    try {
      await action(el);
    } catch (err) {
      if (err && err.local) {
        for (const [name, message] of Object.entries(err.fields || {})) fieldError(el, name, message);
        formError(el, err.message);
      } else {
        for (const [name, message] of Object.entries((err && err.fields) || {})) fieldError(el, name, message);
        formError(el, errorMessage(err));
      }
      const first = el.querySelector("[aria-invalid='true']");
      if (first) first.focus();
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

/** A validation failure found in the page before anything is sent. */
export function invalid(message, fields = {}) {
  const count = Object.keys(fields).length;
  const text = count > 1 ? `Le formulaire contient ${count} erreurs : corrigez les champs signalés.` : count === 1 ? "Le formulaire contient une erreur : corrigez le champ signalé." : message;
  const err = new Error(text);
  err.local = true;
  err.fields = fields;
  return err;
}

export function value(formEl, name) {
  const control = formEl.elements.namedItem(name);
  if (!control) return "";
  if (control.type === "checkbox") return control.checked;
  return control.value.trim();
}

/** A button that runs `action` and reports its error next to it. */
export function actionButton(label, action, { kind = "secondaire", describedBy = null } = {}) {
  const button = h("button", { type: "button", class: `bouton-${kind}`, "aria-describedby": describedBy }, label);
  on(button, "click", async () => {
    button.disabled = true;
    try {
      await action(button);
    } catch (err) {
      const message = h("p", { class: "erreur-formulaire", role: "alert" }, errorMessage(err));
      button.after(message);
    } finally {
      if (button.isConnected) button.disabled = false;
    }
  });
  return button;
}

export function empty(text) {
  return h("p", { class: "vide" }, text);
}

/** Reads every page of a list RPC (the portal shows small lists whole). */
export async function all(api, method, request, key, max = 10) {
  const items = [];
  let pageToken = "";
  for (let page = 0; page < max; page += 1) {
    const reply = await api.rpc(method, { ...request, pageToken });
    items.push(...(reply[key] || []));
    pageToken = reply.nextPageToken || "";
    if (!pageToken) break;
  }
  return items;
}

/** "06 12 34 56 78" → "+33612345678"; an already international number is kept. */
export function toE164(raw) {
  const digits = raw.replace(/[\s.-]/g, "");
  if (!digits) return "";
  if (digits.startsWith("+")) return digits;
  if (/^0[67]\d{8}$/.test(digits)) return `+33${digits.slice(1)}`;
  return digits;
}
