// The other pages of the patient's space: home, advance directives,
// vaccinations, care history, emergency oppositions, contact preferences,
// closing / reactivating the record, and a legal representative's children.

import { h, on, clear, field, formatDate, formatPartialDate, parseDateInput } from "../dom.js";
import { CHANNEL, CLAIM_KIND, CLOSE_REASONS, NOTIFICATION_KINDS } from "../labels.js";
import { actionButton, all, empty, form, invalid, toE164, value } from "./common.js";

export const accueil = {
  title: "Mon espace santé",
  needsSession: true,
  async render(ctx) {
    const own = ctx.isOwnRecord;
    const tiles = [
      ["documents", "Mes documents", "Comptes rendus, ordonnances, résultats"],
      ["profil", "Mon profil médical", "Allergies, maladies, traitements"],
      ["vaccinations", "Mes vaccinations", "Le carnet de vaccination"],
      ["directives", "Mes directives anticipées", "Vos volontés pour la fin de vie"],
      ["soins", "Mes remboursements de soins", "Les 24 derniers mois"],
      ["professionnels", "Mes professionnels de santé", "Autoriser, retirer, bloquer"],
      ["acces", "Historique des accès", "Qui a consulté votre dossier"],
      ["urgence", "Accès en cas d'urgence", "Vos oppositions"],
      ["contact", "Mes notifications", "Courriel, SMS"],
      ["dossier", "Mon dossier", "Fermer ou réactiver"],
      ["enfants", "Dossiers de mes enfants", "Pour un représentant légal"],
    ];
    return h("div", {},
      h("p", {}, own ? "Bienvenue dans votre Dossier Médical Partagé. Que souhaitez-vous faire ?" : "Vous consultez le dossier d'un enfant dont vous êtes le représentant légal."),
      h("ul", { class: "tuiles" }, tiles.map(([view, label, hint]) =>
        h("li", {}, h("a", { href: `#/${view}` }, h("strong", {}, label), h("span", {}, hint))))));
  },
};

export const directives = {
  title: "Mes directives anticipées",
  needsSession: true,
  async render(ctx) {
    const name = `${ctx.dossier}/advanceDirectives`;
    const container = h("div", {});
    const draw = async (message = "") => {
      const current = await ctx.api.rpc("GetAdvanceDirectives", { name });
      clear(container);
      if (message) container.append(h("p", { class: "succes", role: "status" }, message));
      container.append(
        h("p", {}, "Les directives anticipées disent ce que vous souhaitez pour votre fin de vie si vous ne pouvez plus l'exprimer. Les professionnels qui vous soignent les consultent, y compris en urgence."),
        current.revisionId
          ? h("p", { class: "meta" }, `Dernière mise à jour le ${formatDate(current.revisionCreateTime)}.`)
          : h("p", { class: "meta" }, "Vous n'avez encore rien indiqué."),
        form({
          label: "Mes directives anticipées",
          submit: "Enregistrer",
          children: [
            field({ label: "J'ai rédigé des directives anticipées", name: "written", type: "checkbox", value: current.written }),
            field({ label: "Ce que je souhaite (résumé)", name: "summary", rows: 5, value: current.summary || "", maxlength: 4000 }),
            field({ label: "Qui conserve le document original", name: "custodian", value: current.custodian || "", hint: "Par exemple : mon médecin traitant, ma personne de confiance", maxlength: 200 }),
            field({ label: "Date de rédaction", name: "date", type: "date", value: current.writtenDate && current.writtenDate.year ? `${current.writtenDate.year}-${String(current.writtenDate.month).padStart(2, "0")}-${String(current.writtenDate.day).padStart(2, "0")}` : "" }),
          ],
          async action(f) {
            const directivesBody = { name, written: value(f, "written"), summary: value(f, "summary"), custodian: value(f, "custodian") };
            const date = parseDateInput(value(f, "date"));
            const paths = ["written", "summary", "custodian"];
            if (date) {
              directivesBody.writtenDate = date;
              paths.push("writtenDate");
            }
            await ctx.api.rpc("UpdateAdvanceDirectives", {
              advanceDirectives: directivesBody, updateMask: paths.join(","), etag: current.etag, requestId: ctx.api.requestId(),
            });
            await draw("Vos directives anticipées sont enregistrées.");
            container.querySelector(".succes").focus();
          },
        }));
      const success = container.querySelector(".succes");
      if (success) success.setAttribute("tabindex", "-1");
    };
    await draw();
    return container;
  },
};

export const vaccinations = {
  title: "Mes vaccinations",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    const draw = async (message = "") => {
      const list = await all(ctx.api, "ListVaccinations", { parent: ctx.dossier }, "vaccinations");
      clear(container);
      if (message) container.append(h("p", { class: "succes", role: "status", tabindex: "-1" }, message));
      container.append(list.length
        ? h("table", { class: "empilable" },
          h("caption", {}, "Carnet de vaccination"),
          h("thead", {}, h("tr", {}, ["Vaccin", "Date", "Dose", "Rappel prévu"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, list.map((v) => h("tr", {},
            h("td", { "data-label": "Vaccin" }, (v.vaccine || {}).display || (v.vaccine || {}).code || ""),
            h("td", { "data-label": "Date" }, formatPartialDate(v.administrationDate)),
            h("td", { "data-label": "Dose" }, v.doseNumber ? String(v.doseNumber) : "—"),
            h("td", { "data-label": "Rappel prévu" }, v.boosterDate ? formatPartialDate(v.boosterDate) : "—")))))
        : empty("Aucune vaccination enregistrée."));
      container.append(h("h2", {}, "Ajouter une vaccination"), form({
        label: "Ajouter une vaccination",
        submit: "Ajouter",
        children: [
          field({ label: "Vaccin", name: "vaccin", required: true, hint: "Nom du vaccin, tel qu'il figure sur l'étiquette ou le carnet", maxlength: 200 }),
          field({ label: "Date de la vaccination", name: "date", type: "date", required: true }),
          field({ label: "Numéro de la dose", name: "dose", type: "number", hint: "Facultatif" }),
          field({ label: "Numéro de lot", name: "lot", hint: "Facultatif", maxlength: 64 }),
        ],
        async action(f) {
          const date = parseDateInput(value(f, "date"));
          const missing = {};
          if (!value(f, "vaccin")) missing.vaccin = "Indiquez le vaccin.";
          if (!date) missing.date = "Indiquez la date de la vaccination.";
          if (Object.keys(missing).length) throw invalid("Le formulaire contient des erreurs.", missing);
          const vaccination = { vaccine: { display: value(f, "vaccin") }, administrationDate: date };
          if (value(f, "dose")) vaccination.doseNumber = Number(value(f, "dose"));
          if (value(f, "lot")) vaccination.lotNumber = value(f, "lot");
          await ctx.api.rpc("CreateVaccination", { parent: ctx.dossier, vaccination, requestId: ctx.api.requestId() });
          await draw(`La vaccination « ${vaccination.vaccine.display} » a été ajoutée.`);
          container.querySelector(".succes").focus();
        },
      }));
    };
    await draw();
    return container;
  },
};

function careLine(line) {
  const kinds = ["drug", "medicalAct", "biology", "medicalDevice", "hospitalStay", "vaccine"];
  const kind = kinds.find((k) => line[k]) || "line";
  const detail = line[kind] || {};
  const who = line.performerDisplay && line.performerDisplay.displayName ? line.performerDisplay.displayName : "";
  return h("tr", {},
    h("td", { "data-label": "Date" }, formatPartialDate(line.careDate)),
    h("td", { "data-label": "Type" }, CLAIM_KIND[kind]),
    h("td", { "data-label": "Détail" }, detail.label || detail.code || detail.atcCode || ""),
    h("td", { "data-label": "Réalisé par" }, who || "—"));
}

export const soins = {
  title: "Mes remboursements de soins",
  needsSession: true,
  async render(ctx) {
    const reply = await ctx.api.rpc("GetCareHistory", { name: `${ctx.dossier}/careHistory`, pageSize: 100 });
    const rows = [];
    for (const entry of reply.entries || []) {
      if (entry.line) rows.push(careLine(entry.line));
      if (entry.drugGroup) {
        const g = entry.drugGroup;
        rows.push(h("tr", {},
          h("td", { "data-label": "Date" }, `${formatPartialDate(g.firstCareDate)} – ${formatPartialDate(g.lastCareDate)}`),
          h("td", { "data-label": "Type" }, CLAIM_KIND.drug),
          h("td", { "data-label": "Détail" }, `${g.atcClassLabel || g.atcClassCode} (${g.lineCount} délivrance${g.lineCount > 1 ? "s" : ""})`),
          h("td", { "data-label": "Réalisé par" }, "Pharmacie")));
      }
    }
    return h("div", {},
      h("p", {}, "Les soins remboursés par l'Assurance Maladie ces 24 derniers mois : consultations, médicaments, analyses, hospitalisations."),
      rows.length
        ? h("table", { class: "empilable" },
          h("caption", {}, "Soins des 24 derniers mois, les plus récents en premier"),
          h("thead", {}, h("tr", {}, ["Date", "Type", "Détail", "Réalisé par"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows))
        : empty("Aucun soin remboursé sur cette période."));
  },
};

export const urgence = {
  title: "Accès en cas d'urgence",
  needsSession: true,
  async render(ctx) {
    const rules = await all(ctx.api, "ListAccessRules", { parent: ctx.dossier }, "accessRules");
    const prefsRule = rules.find((r) => r.kind === "ACCESS_RULE_KIND_EMERGENCY_PREFERENCES");
    const prefs = (prefsRule && prefsRule.emergencyPreferences) || {};
    const status = h("div", {});
    return h("div", {},
      h("p", {}, "En cas d'urgence, un professionnel peut consulter votre dossier sans votre autorisation préalable, et le SAMU (centre 15) peut le consulter pendant la régulation d'un appel. Vous pouvez vous y opposer. Chaque accès d'urgence vous est signalé."),
      status,
      form({
        label: "Mes oppositions",
        submit: "Enregistrer mes choix",
        children: [h("fieldset", {}, h("legend", {}, "Je m'oppose à"),
          field({ label: "l'accès en urgence par un professionnel (« bris de glace »)", name: "bdg", type: "checkbox", value: prefs.opposeBrisDeGlace }),
          field({ label: "l'accès par le médecin régulateur du SAMU (centre 15)", name: "c15", type: "checkbox", value: prefs.opposeCentre15 }))],
        async action(f) {
          await ctx.api.rpc("SetEmergencyPreferences", {
            name: ctx.dossier,
            preferences: { opposeBrisDeGlace: value(f, "bdg"), opposeCentre15: value(f, "c15") },
            requestId: ctx.api.requestId(),
          });
          clear(status);
          status.append(h("p", { class: "succes", role: "status" }, "Vos choix sont enregistrés."));
        },
      }));
  },
};

export const contact = {
  title: "Mes notifications",
  needsSession: true,
  async render(ctx) {
    const name = `patients/${ctx.state.session.ins}/contactPreferences`;
    const prefs = await ctx.api.rpc("GetContactPreferences", { name });
    const chosen = {};
    for (const choice of prefs.choices || []) chosen[choice.kind] = new Set(choice.channels || []);
    const status = h("div", {});
    const rows = NOTIFICATION_KINDS.map(([kind, label]) => h("fieldset", {}, h("legend", {}, label),
      Object.entries(CHANNEL).map(([channel, channelLabel]) =>
        field({ label: channelLabel, name: `${kind}:${channel}`, type: "checkbox", value: chosen[kind] ? chosen[kind].has(channel) : Boolean(channel === "CHANNEL_EMAIL" ? prefs.email : prefs.mobilePhone) }))));
    return h("div", {},
      h("p", {}, "Choisissez comment être prévenu. Les accès d'urgence vous sont toujours signalés par courriel et par SMS. Aucune information médicale n'est envoyée dans ces messages."),
      status,
      form({
        label: "Mes coordonnées et notifications",
        submit: "Enregistrer",
        children: [
          field({ label: "Adresse électronique", name: "email", type: "email", value: prefs.email || "", autocomplete: "email" }),
          field({ label: "Téléphone mobile", name: "mobile", type: "tel", value: prefs.mobilePhone || "", autocomplete: "tel", hint: "Exemple : 06 12 34 56 78" }),
          h("h2", {}, "Être prévenu quand…"),
          rows,
        ],
        async action(f) {
          const choices = NOTIFICATION_KINDS.map(([kind]) => ({
            kind, channels: Object.keys(CHANNEL).filter((channel) => value(f, `${kind}:${channel}`)),
          }));
          const missing = {};
          for (const { kind, channels } of choices) {
            if (channels.includes("CHANNEL_EMAIL") && !value(f, "email")) missing[`${kind}:CHANNEL_EMAIL`] = "Indiquez une adresse électronique pour être prévenu par courriel.";
            if (channels.includes("CHANNEL_SMS") && !value(f, "mobile")) missing[`${kind}:CHANNEL_SMS`] = "Indiquez un numéro de mobile pour être prévenu par SMS.";
          }
          if (Object.keys(missing).length) throw invalid("", missing);
          await ctx.api.rpc("SetContactPreferences", {
            contactPreferences: { name, email: value(f, "email"), mobilePhone: toE164(value(f, "mobile")), choices },
            requestId: ctx.api.requestId(),
          });
          clear(status);
          status.append(h("p", { class: "succes", role: "status" }, "Vos préférences sont enregistrées."));
        },
      }));
  },
};

export const dossier = {
  title: "Mon dossier",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    // After a change the answer is shown as is: consent learns a closure or a reactivation
    // from an event, so a read right after it may still see the former state.
    const draw = async (message = "", known = null) => {
      let record = known;
      if (!record) try {
        record = await ctx.api.rpc("GetDossier", { name: ctx.dossier });
      } catch (err) {
        // A closed record refuses everything but its reactivation, its own reading included.
        if (err.reason !== "DOSSIER_CLOSED") throw err;
        record = { name: ctx.dossier, state: "DOSSIER_STATE_CLOSED" };
      }
      clear(container);
      if (message) container.append(h("p", { class: "succes", role: "status", tabindex: "-1" }, message));
      const identity = record.identity || {};
      if (record.identity) {
        container.append(h("dl", { class: "infos" },
          h("dt", {}, "Titulaire"), h("dd", {}, `${identity.usedGivenName || (identity.birthGivenNames || [])[0] || ""} ${identity.usedFamilyName || identity.birthFamilyName || ""}`),
          h("dt", {}, "Créé le"), h("dd", {}, formatDate(record.createTime)),
          h("dt", {}, "État"), h("dd", {}, record.state === "DOSSIER_STATE_CLOSED" ? `Fermé le ${formatDate(record.closeTime)}` : "Ouvert")));
      } else {
        container.append(h("p", {}, "Ce dossier est fermé : personne ne peut le consulter ni l'alimenter."));
      }
      if (record.state === "DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED" || (record.currentTermsVersion && record.acceptedTermsVersion !== record.currentTermsVersion && record.state !== "DOSSIER_STATE_CLOSED")) {
        container.append(h("h2", {}, "Conditions d'utilisation"),
          h("p", {}, "Les conditions d'utilisation du DMP ont changé. Acceptez-les pour continuer à utiliser votre dossier."),
          actionButton("J'accepte les conditions d'utilisation", async () => {
            await ctx.api.rpc("AcceptTermsOfUse", { name: record.name, termsVersion: record.currentTermsVersion, requestId: ctx.api.requestId() });
            await draw("Conditions acceptées.");
          }, { kind: "primaire" }));
      }
      if (record.state === "DOSSIER_STATE_CLOSED") {
        container.append(h("h2", {}, "Réactiver mon dossier"),
          h("p", {}, record.purgeTime ? `Votre dossier est conservé jusqu'au ${formatDate(record.purgeTime)}. ` : "Votre dossier est conservé 10 ans après sa fermeture. ",
            "En le réactivant, vous et vos professionnels y avez de nouveau accès."),
          actionButton("Réactiver mon dossier", async () => {
            const reopened = await ctx.api.rpc("ReactivateDossier", { name: record.name, etag: record.etag, requestId: ctx.api.requestId() });
            await draw("Votre dossier est de nouveau ouvert.", reopened);
            container.querySelector(".succes").focus();
          }, { kind: "primaire" }));
      } else {
        container.append(h("h2", {}, "Fermer mon dossier"),
          h("p", {}, "Une fois fermé, plus personne ne peut consulter ni alimenter votre dossier. Il est conservé 10 ans : vous pouvez le réactiver pendant ce temps."),
          form({
            label: "Fermer mon dossier",
            submit: "Fermer mon dossier",
            children: [
              field({ label: "Raison", name: "raison", options: CLOSE_REASONS, value: "CLOSE_REASON_PATIENT_REQUEST" }),
              field({ label: "Précisions", name: "commentaire", rows: 3, hint: "Obligatoire si vous choisissez « Autre raison »", maxlength: 500 }),
              field({ label: "Je comprends que plus aucun professionnel ne pourra consulter mon dossier", name: "confirme", type: "checkbox" }),
            ],
            async action(f) {
              const reason = f.elements.namedItem("raison").value;
              const missing = {};
              if (!value(f, "confirme")) missing.confirme = "Cochez la case pour confirmer.";
              if (reason === "CLOSE_REASON_OTHER" && !value(f, "commentaire")) missing.commentaire = "Précisez la raison.";
              if (Object.keys(missing).length) throw invalid("Le formulaire contient des erreurs.", missing);
              const closed = await ctx.api.rpc("CloseDossier", { name: record.name, reason, comment: value(f, "commentaire"), etag: record.etag, requestId: ctx.api.requestId() });
              await draw("Votre dossier est fermé.", closed);
              container.querySelector(".succes").focus();
            },
          }));
      }
    };
    await draw();
    const refresh = h("button", { type: "button", class: "bouton-secondaire" }, "Actualiser");
    on(refresh, "click", () => ctx.rerender());
    return h("div", {}, container, h("div", { class: "actions" }, refresh));
  },
};

export const enfants = {
  title: "Dossiers de mes enfants",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    const children = ctx.state.records.filter((r) => !r.own);
    container.append(h("p", {}, "Si vous êtes le représentant légal d'un enfant mineur, vous pouvez consulter et gérer son dossier. Ajoutez-le ici, puis choisissez le dossier affiché en haut de la page."));
    container.append(children.length
      ? h("ul", {}, children.map((r) => h("li", {}, r.label)))
      : empty("Aucun dossier d'enfant ajouté."));
    container.append(h("h2", {}, "Ajouter le dossier d'un enfant"), form({
      label: "Ajouter le dossier d'un enfant",
      submit: "Ajouter",
      children: [field({ label: "Numéro de sécurité sociale de l'enfant", name: "ins", required: true, hint: "Les 15 caractères, clé comprise (sur l'attestation de droits).", maxlength: 20 })],
      async action(f) {
        const ins = value(f, "ins").replace(/\s+/g, "").toUpperCase();
        if (!ins) throw invalid("Le formulaire contient des erreurs.", { ins: "Indiquez le numéro de l'enfant." });
        const record = await ctx.api.rpc("GetDossier", { name: `patients/${ins}/dossier` });
        const identity = record.identity || {};
        const first = identity.usedGivenName || (identity.birthGivenNames || [])[0] || "mon enfant";
        if (!ctx.state.records.some((r) => r.name === record.name)) {
          ctx.state.records.push({ name: record.name, label: `Dossier de ${first}`, own: false });
        }
        ctx.state.current = record.name;
        ctx.announce(`Dossier de ${first} ajouté et affiché.`);
        ctx.refreshAccount();
        ctx.navigate("accueil");
      },
    }));
    return container;
  },
};
