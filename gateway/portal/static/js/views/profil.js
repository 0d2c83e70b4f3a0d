// The health profile: allergies (add, change, remove) and what professionals
// recorded (conditions, treatments, blood group), read-only here.

import { h, on, clear, field, formatPartialDate } from "../dom.js";
import { ABO, CONDITION_CATEGORY, RHESUS, SEVERITY } from "../labels.js";
import { actionButton, empty, form, invalid, value } from "./common.js";

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

      container.append(h("h2", {}, "Maladies et antécédents"));
      const conditions = profile.conditions || [];
      container.append(conditions.length
        ? h("ul", {}, conditions.map((c) => h("li", {}, (c.code || {}).display || "Antécédent",
          c.category ? ` (${CONDITION_CATEGORY[c.category] || ""})` : "",
          c.onsetDate ? ` — depuis ${formatPartialDate(c.onsetDate)}` : "")))
        : empty("Rien n'est renseigné."));

      container.append(h("h2", {}, "Traitements"));
      const treatments = profile.treatments || [];
      container.append(treatments.length
        ? h("ul", {}, treatments.map((t) => h("li", {}, (t.medication || {}).display || "Traitement", t.dosage ? ` — ${t.dosage}` : "")))
        : empty("Rien n'est renseigné."));

      container.append(h("h2", {}, "Groupe sanguin"));
      const blood = profile.bloodGroup;
      container.append(blood && blood.abo
        ? h("p", {}, `${ABO[blood.abo] || ""} ${RHESUS[blood.rhesus] ? `rhésus ${RHESUS[blood.rhesus]}` : ""}`)
        : empty("Non renseigné. Seul un professionnel peut l'indiquer."));
    };
    await draw();
    return container;
  },
};
