// The access history: who opened the record, when and how, with the check
// of its hash chain said in plain words.

import { h, on, formatDateTime } from "../dom.js";
import { ACCESS_MODE, PRINCIPAL_KIND, accessWhat, professionLabel } from "../labels.js";
import { all, empty } from "./common.js";

function whoAccessed(entry) {
  const p = entry.principal || {};
  if (p.kind === "PRINCIPAL_KIND_PROFESSIONAL" || p.rpps) {
    const name = p.displayName || `RPPS ${p.rpps}`;
    const job = p.professionDisplay || professionLabel(p.professionCode);
    const where = p.establishmentName ? `, via ${p.establishmentName}` : "";
    return `${name} (${job}${p.specialtyDisplay ? `, ${p.specialtyDisplay}` : ""})${where}`;
  }
  return PRINCIPAL_KIND[p.kind] || "Un utilisateur";
}

function verification(result) {
  if (result.ok) {
    const count = Number(result.verifiedEntryCount || 0);
    return h("div", { class: "verification", role: "status" },
      h("p", {}, h("strong", {}, "Historique vérifié : rien n'a été modifié ni effacé.")),
      h("p", {}, `Les ${count} accès enregistrés forment une chaîne scellée, contrôlée le ${formatDateTime(result.verifyTime)}. Une entrée modifiée ou supprimée casserait cette chaîne.`));
  }
  return h("div", { class: "verification verification-rompue", role: "alert" },
    h("p", {}, h("strong", {}, "Attention : l'historique présente une anomalie.")),
    h("p", {}, `La vérification s'arrête à l'accès n° ${result.firstBrokenSequence}. Contactez DMP Info Service au 3608 (service gratuit + prix d'un appel).`));
}

export const acces = {
  title: "Historique des accès",
  needsSession: true,
  async render(ctx) {
    const [result, entries] = await Promise.all([
      ctx.api.rpc("VerifyAccessLog", { parent: ctx.dossier }),
      all(ctx.api, "ListAccessHistory", { parent: ctx.dossier, pageSize: 100 }, "entries", 3),
    ]);
    const refresh = h("button", { type: "button", class: "bouton-secondaire" }, "Actualiser");
    on(refresh, "click", () => ctx.rerender());
    const container = h("div", {}, verification(result),
      h("p", {}, "Chaque consultation ou modification de votre dossier est enregistrée ici, les plus récentes en premier."),
      h("div", { class: "actions" }, refresh));
    if (!entries.length) {
      container.append(empty("Aucun accès enregistré."));
      return container;
    }
    const rows = entries.map((e) => h("tr", {},
      h("td", { "data-label": "Date" }, formatDateTime(e.time)),
      h("td", { "data-label": "Qui" }, whoAccessed(e)),
      h("td", { "data-label": "Quoi" }, accessWhat(e)),
      h("td", { "data-label": "Mode" }, ACCESS_MODE[e.mode] || "—"),
      h("td", { "data-label": "Résultat" }, e.decision === "DECISION_DENIED" ? "Refusé" : "Autorisé")));
    container.append(h("table", { class: "empilable" },
      h("caption", {}, `${entries.length} accès`),
      h("thead", {}, h("tr", {}, ["Date", "Qui", "Quoi", "Mode", "Résultat"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
    return container;
  },
};
