// Who may open the record: the professionals the patient authorised or
// blocked, and a directory search to authorise or block someone.

import { h, clear, field, formatDate } from "../dom.js";
import { PROFESSIONS, RULE_KIND, professionLabel } from "../labels.js";
import { actionButton, all, empty, form, value } from "./common.js";

const PROFESSION_OPTIONS = [["", "Toutes les professions"], ...Object.entries(PROFESSIONS)];

function ruleCard(ctx, rule, redraw) {
  const id = `regle-${rule.name.split("/").pop()}`;
  const who = rule.professionalDisplayName || `RPPS ${rule.professionalRpps}`;
  const card = h("li", { class: "carte" },
    h("h3", { id }, who),
    h("p", { class: "meta" }, professionLabel(rule.professionalProfessionCode), ` · RPPS ${rule.professionalRpps}`),
    h("p", {}, h("span", { class: rule.kind === "ACCESS_RULE_KIND_BLOCK" ? "etiquette etiquette-alerte" : "etiquette" }, RULE_KIND[rule.kind] || ""),
      ` depuis le ${formatDate(rule.createTime)}`,
      rule.expireTime ? `, jusqu'au ${formatDate(rule.expireTime)}` : ""));
  const actions = h("div", { class: "actions" });
  if (rule.kind === "ACCESS_RULE_KIND_GRANT") {
    actions.append(actionButton("Retirer l'autorisation", async () => {
      await ctx.api.rpc("RevokeAccess", { name: rule.name, etag: rule.etag, requestId: ctx.api.requestId() });
      await redraw(`${who} n'a plus accès à votre dossier.`);
    }, { kind: "danger", describedBy: id }));
  } else if (rule.kind === "ACCESS_RULE_KIND_BLOCK") {
    actions.append(actionButton("Débloquer", async () => {
      await ctx.api.rpc("UnblockProfessional", { name: rule.name, etag: rule.etag, requestId: ctx.api.requestId() });
      await redraw(`${who} n'est plus bloqué.`);
    }, { describedBy: id }));
  }
  if (actions.children.length) card.append(actions);
  return card;
}

function resultCard(ctx, pro, redraw) {
  const id = `pro-${pro.rpps}`;
  const who = `${pro.givenName} ${pro.familyName}`;
  return h("li", { class: "carte" },
    h("h3", { id }, who),
    h("p", { class: "meta" }, professionLabel(pro.professionCode), ` · RPPS ${pro.rpps}`),
    h("div", { class: "actions" },
      actionButton("Autoriser", async () => {
        await ctx.api.rpc("GrantAccess", { parent: ctx.dossier, professionalRpps: pro.rpps, requestId: ctx.api.requestId() });
        await redraw(`${who} peut maintenant consulter votre dossier.`);
      }, { kind: "primaire", describedBy: id }),
      actionButton("Bloquer", async () => {
        await ctx.api.rpc("BlockProfessional", { parent: ctx.dossier, professionalRpps: pro.rpps, requestId: ctx.api.requestId() });
        await redraw(`${who} est bloqué : il ne pourra pas accéder à votre dossier, même en urgence.`);
      }, { kind: "danger", describedBy: id })));
}

export const professionnels = {
  title: "Mes professionnels de santé",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    const rulesBox = h("div", {});
    const resultsBox = h("div", { "aria-live": "polite" });
    const drawRules = async (message = "") => {
      const rules = await all(ctx.api, "ListAccessRules", { parent: ctx.dossier }, "accessRules");
      const shown = rules.filter((r) => RULE_KIND[r.kind] && r.kind !== "ACCESS_RULE_KIND_EMERGENCY_ACCESS");
      clear(rulesBox);
      if (message) rulesBox.append(h("p", { class: "succes", role: "status" }, message));
      rulesBox.append(shown.length
        ? h("ul", { class: "cartes", "aria-labelledby": "titre-autorises" }, shown.map((r) => ruleCard(ctx, r, redraw)))
        : empty("Aucun professionnel autorisé ni bloqué pour le moment."));
    };
    const redraw = async (message) => {
      await drawRules(message);
      clear(resultsBox);
      container.querySelector("#titre-autorises").focus();
    };
    await drawRules();
    const search = form({
      label: "Rechercher un professionnel",
      submit: "Rechercher",
      secondary: true,
      children: [
        field({ label: "Nom ou numéro RPPS", name: "nom", hint: "Par exemple : Martin", autocomplete: "off" }),
        field({ label: "Profession", name: "profession", options: PROFESSION_OPTIONS, value: "" }),
      ],
      async action(f) {
        const text = value(f, "nom").toLocaleLowerCase("fr");
        const profession = f.elements.namedItem("profession").value;
        const request = { pageSize: 200 };
        if (profession) request.filter = `profession_code = "${profession}"`;
        const pros = await all(ctx.api, "ListProfessionals", request, "professionals", 5);
        const found = pros.filter((p) => !text || `${p.givenName} ${p.familyName} ${p.rpps}`.toLocaleLowerCase("fr").includes(text)).slice(0, 20);
        clear(resultsBox);
        resultsBox.append(h("h3", {}, `${found.length} résultat${found.length > 1 ? "s" : ""}`));
        if (found.length) resultsBox.append(h("ul", { class: "cartes" }, found.map((p) => resultCard(ctx, p, redraw))));
      },
    });
    container.append(
      h("p", {}, "Votre médecin traitant et les professionnels que vous autorisez peuvent consulter votre dossier. Un professionnel bloqué ne peut jamais y accéder, même en urgence."),
      h("h2", { id: "titre-autorises", tabindex: "-1" }, "Professionnels autorisés ou bloqués"),
      rulesBox,
      h("h2", {}, "Autoriser ou bloquer un professionnel"),
      search,
      resultsBox);
    return container;
  },
};
