// The health profile: what the patient may write in it (records lets the patient
// write every section of UpdateHealthProfile): allergies (add, change, remove), the
// blood group, conditions, treatments and emergency contacts (add, remove). Each form
// sends only its own section (update_mask) with the profile's etag.

import { h, on, clear, field, formatPartialDate } from "../dom.js";
import { ABO, CONDITION_CATEGORY, RHESUS, SEVERITY } from "../labels.js";
import { actionButton, empty, form, invalid, toE164, value } from "./common.js";

const SEVERITY_LABEL = Object.fromEntries(SEVERITY);

function profileName(dossier) {
  return `${dossier}/healthProfile`;
}

function allergyForm(ctx, profile, allergy, done) {
  const editing = Boolean(allergy);
  return form({
    label: editing ? "Modifier l'allergie" : "Ajouter une allergie",
    submit: editing ? "Enregistrer" : "Ajouter l'allergie",
    children: [
      field({ label: "Allergie ou intolérance à", name: "substance", required: true, value: editing ? (allergy.substance || {}).display || "" : "", hint: "Par exemple : pénicilline, arachide, latex", maxlength: 200 }),
      field({ label: "Il s'agit d'une intolérance (pas d'une allergie)", name: "intolerance", type: "checkbox", value: editing && allergy.intolerance }),
      field({ label: "Gravité", name: "gravite", options: SEVERITY, value: editing ? allergy.severity || "ALLERGY_SEVERITY_UNSPECIFIED" : "ALLERGY_SEVERITY_UNSPECIFIED" }),
      field({ label: "Réaction observée", name: "reaction", value: editing ? allergy.reaction || "" : "", hint: "Facultatif. Par exemple : plaques rouges, gonflement", maxlength: 500 }),
    ],
    async action(f) {
      const substance = value(f, "substance");
      if (!substance) throw invalid("Le formulaire contient des erreurs.", { substance: "Indiquez à quoi vous êtes allergique." });
      const item = { substance: { display: substance }, intolerance: value(f, "intolerance"), reaction: value(f, "reaction") };
      const severity = f.elements.namedItem("gravite").value;
      if (severity !== "ALLERGY_SEVERITY_UNSPECIFIED") item.severity = severity;
      if (editing) item.itemId = allergy.itemId;
      await ctx.api.rpc("UpdateHealthProfile", {
        healthProfile: { name: profile.name, allergies: [item] },
        updateMask: "allergies",
        etag: profile.etag,
        requestId: ctx.api.requestId(),
      });
      await done(editing ? `L'allergie « ${substance} » a été modifiée.` : `L'allergie « ${substance} » a été ajoutée.`);
    },
  });
}

function bloodGroupForm(ctx, profile, done) {
  const blood = profile.bloodGroup || {};
  return form({
    label: "Groupe sanguin",
    submit: "Enregistrer le groupe sanguin",
    children: [
      field({ label: "Groupe (ABO)", name: "abo", options: [["", "Choisissez"], ...Object.entries(ABO)], value: blood.abo || "" }),
      field({ label: "Rhésus", name: "rhesus", options: [["", "Je ne sais pas"], ...Object.entries(RHESUS)], value: blood.rhesus || "" }),
    ],
    async action(f) {
      const abo = value(f, "abo");
      if (!abo) throw invalid("Le formulaire contient des erreurs.", { abo: "Choisissez votre groupe sanguin." });
      const item = { abo };
      const rhesus = value(f, "rhesus");
      if (rhesus) item.rhesus = rhesus;
      if (blood.itemId) item.itemId = blood.itemId;
      await ctx.api.rpc("UpdateHealthProfile", {
        healthProfile: { name: profile.name, bloodGroup: item },
        updateMask: "bloodGroup",
        etag: profile.etag,
        requestId: ctx.api.requestId(),
      });
      await done(`Groupe sanguin enregistré : ${ABO[abo]}${rhesus ? ` rhésus ${RHESUS[rhesus]}` : ""}.`);
    },
  });
}

/** The list sections the patient adds to and removes from: section, wording, fields. */
const SECTIONS = {
  conditions: {
    title: "Maladies et antécédents", add: "Ajouter une maladie ou un antécédent", submit: "Ajouter l'antécédent",
    fields: () => [
      field({ label: "Maladie ou antécédent", name: "libelle", required: true, maxlength: 200, hint: "Par exemple : asthme, appendicectomie" }),
      field({ label: "Type", name: "categorie", options: [["", "Non précisé"], ...Object.entries(CONDITION_CATEGORY)] }),
    ],
    item(f) {
      const item = { code: { display: value(f, "libelle") } };
      if (value(f, "categorie")) item.category = value(f, "categorie");
      return item;
    },
    missing: { libelle: "Indiquez la maladie ou l'antécédent." },
    label: (c) => `${(c.code || {}).display || "Antécédent"}${c.category ? ` (${CONDITION_CATEGORY[c.category] || ""})` : ""}${c.onsetDate ? ` — depuis ${formatPartialDate(c.onsetDate)}` : ""}`,
  },
  treatments: {
    title: "Traitements", add: "Ajouter un traitement", submit: "Ajouter le traitement",
    fields: () => [
      field({ label: "Médicament", name: "libelle", required: true, maxlength: 200, hint: "Par exemple : Ventoline" }),
      field({ label: "Posologie", name: "posologie", maxlength: 200, hint: "Facultatif. Par exemple : 2 bouffées si besoin" }),
    ],
    item(f) {
      const item = { medication: { display: value(f, "libelle") } };
      if (value(f, "posologie")) item.dosage = value(f, "posologie");
      return item;
    },
    missing: { libelle: "Indiquez le médicament." },
    label: (t) => `${(t.medication || {}).display || "Traitement"}${t.dosage ? ` — ${t.dosage}` : ""}`,
  },
  emergencyContacts: {
    mask: "emergencyContacts",
    title: "Personnes à prévenir en cas d'urgence", add: "Ajouter une personne à prévenir", submit: "Ajouter la personne",
    fields: () => [
      field({ label: "Nom", name: "libelle", required: true, maxlength: 200, autocomplete: "off" }),
      field({ label: "Lien avec vous", name: "lien", maxlength: 100, hint: "Facultatif. Par exemple : conjoint, fille" }),
      field({ label: "Téléphone", name: "telephone", type: "tel", inputmode: "tel", hint: "Téléphone ou courriel : au moins l'un des deux" }),
      field({ label: "Courriel", name: "courriel", type: "email" }),
    ],
    item(f) {
      const item = { displayName: value(f, "libelle") };
      if (value(f, "lien")) item.relationship = value(f, "lien");
      if (value(f, "telephone")) item.phone = toE164(value(f, "telephone"));
      if (value(f, "courriel")) item.email = value(f, "courriel");
      return item;
    },
    check(f) {
      return value(f, "telephone") || value(f, "courriel") ? null : { telephone: "Indiquez un téléphone ou un courriel." };
    },
    missing: { libelle: "Indiquez le nom de la personne." },
    label: (c) => `${c.displayName || "Contact"}${c.relationship ? ` (${c.relationship})` : ""} — ${[c.phone, c.email].filter(Boolean).join(", ")}`,
  },
};

function sectionBlock(ctx, profile, key, redraw) {
  const spec = SECTIONS[key];
  const mask = spec.mask || key;
  const titleId = `titre-${mask}`;
  const block = [h("h2", { id: titleId, tabindex: "-1" }, spec.title)];
  const items = profile[key] || [];
  if (items.length) {
    block.push(h("ul", { class: "cartes", "aria-labelledby": titleId }, items.map((item) => {
      const id = `element-${item.itemId}`;
      const text = spec.label(item);
      return h("li", { class: "carte" }, h("p", { id }, text),
        h("div", { class: "actions" }, actionButton("Supprimer", async () => {
          await ctx.api.rpc("UpdateHealthProfile", {
            healthProfile: { name: profile.name },
            updateMask: mask,
            removeItemIds: [item.itemId],
            etag: profile.etag,
            requestId: ctx.api.requestId(),
          });
          await redraw(`« ${text} » a été supprimé.`, titleId);
        }, { kind: "danger", describedBy: id })));
    })));
  } else {
    block.push(empty("Rien n'est renseigné."));
  }
  block.push(h("h3", {}, spec.add), form({
    label: spec.add,
    submit: spec.submit,
    children: spec.fields(),
    async action(f) {
      if (!value(f, "libelle")) throw invalid("Le formulaire contient des erreurs.", spec.missing);
      const other = spec.check ? spec.check(f) : null;
      if (other) throw invalid("Le formulaire contient des erreurs.", other);
      const item = spec.item(f);
      await ctx.api.rpc("UpdateHealthProfile", {
        healthProfile: { name: profile.name, [key]: [item] },
        updateMask: mask,
        etag: profile.etag,
        requestId: ctx.api.requestId(),
      });
      await redraw(`« ${spec.label(item)} » a été ajouté.`, titleId);
    },
  }));
  return block;
}

function allergyCard(ctx, profile, allergy, redraw) {
  const substance = (allergy.substance || {}).display || (allergy.substance || {}).code || "Allergie";
  const id = `allergie-${allergy.itemId}`;
  const item = h("li", { class: "carte" });
  const edit = h("button", { type: "button", class: "bouton-secondaire", "aria-describedby": id }, "Modifier");
  on(edit, "click", () => {
    clear(item);
    item.append(h("h3", { tabindex: "-1" }, `Modifier : ${substance}`), allergyForm(ctx, profile, allergy, redraw));
    item.querySelector("h3").focus();
  });
  const remove = actionButton("Supprimer", async () => {
    await ctx.api.rpc("UpdateHealthProfile", {
      healthProfile: { name: profile.name },
      updateMask: "allergies",
      removeItemIds: [allergy.itemId],
      etag: profile.etag,
      requestId: ctx.api.requestId(),
    });
    await redraw(`L'allergie « ${substance} » a été supprimée.`);
  }, { kind: "danger", describedBy: id });
  item.append(
    h("h3", { id }, substance),
    h("p", {}, allergy.intolerance ? "Intolérance" : "Allergie",
      allergy.severity ? ` · gravité ${SEVERITY_LABEL[allergy.severity].toLowerCase()}` : ""),
    allergy.reaction ? h("p", {}, `Réaction : ${allergy.reaction}`) : null,
    h("div", { class: "actions" }, edit, remove));
  return item;
}

export const profil = {
  title: "Mon profil médical",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    const draw = async (message = "") => {
      const profile = await ctx.api.rpc("GetHealthProfile", { name: profileName(ctx.dossier) });
      clear(container);
      if (message) container.append(h("p", { class: "succes", role: "status" }, message));
      container.append(h("p", {}, "Ces informations aident les professionnels que vous autorisez, notamment en cas d'urgence."));
      const redraw = async (msg) => {
        await draw(msg);
        const heading = container.querySelector("#titre-allergies");
        if (heading) heading.focus();
      };
      container.append(h("h2", { id: "titre-allergies", tabindex: "-1" }, "Allergies et intolérances"));
      const allergies = profile.allergies || [];
      if (allergies.length) {
        container.append(h("ul", { class: "cartes", "aria-labelledby": "titre-allergies" },
          allergies.map((a) => allergyCard(ctx, profile, a, redraw))));
      } else {
        container.append(empty("Aucune allergie déclarée."));
      }
      container.append(h("h3", {}, "Ajouter une allergie"), allergyForm(ctx, profile, null, redraw));

      const redrawAt = async (msg, titleId) => {
        await draw(msg);
        const heading = container.querySelector(`#${titleId}`);
        if (heading) heading.focus();
      };
      container.append(h("h2", { id: "titre-groupe", tabindex: "-1" }, "Groupe sanguin"));
      const blood = profile.bloodGroup;
      container.append(blood && blood.abo
        ? h("p", {}, `Groupe enregistré : ${ABO[blood.abo] || ""}${RHESUS[blood.rhesus] ? ` rhésus ${RHESUS[blood.rhesus]}` : ""}`)
        : empty("Non renseigné."));
      container.append(bloodGroupForm(ctx, profile, (msg) => redrawAt(msg, "titre-groupe")));
      for (const key of Object.keys(SECTIONS)) container.append(...sectionBlock(ctx, profile, key, redrawAt));
    };
    await draw();
    return container;
  },
};
