// Pages before login: account activation (the code of the letter or of the
// ameli message) and the two login steps (password, then one-time code).

import { h, field, on } from "../dom.js";
import { form, invalid, toE164, value } from "./common.js";

function normalizeIns(raw) {
  return raw.replace(/\s+/g, "").toUpperCase();
}

const INS_HINT = "Les 15 caractères de votre numéro de sécurité sociale, clé comprise (sur votre carte Vitale).";

export const activer = {
  title: "Activer mon DMP",
  needsSession: false,
  onlySignedOut: true,
  async render(ctx) {
    const done = h("div", { class: "succes", role: "status", hidden: true });
    const el = form({
      label: "Activer mon compte",
      submit: "Activer mon compte",
      children: [
        h("p", {}, "Vous avez reçu un code d'activation par courrier ou dans votre espace ameli. Choisissez votre mot de passe et où recevoir vos codes de connexion."),
        field({ label: "Numéro de sécurité sociale", name: "ins", hint: INS_HINT, required: true, autocomplete: "username", inputmode: "text", maxlength: 20 }),
        field({ label: "Code d'activation", name: "code", hint: "Tel qu'il figure sur le courrier ou dans le message ameli.", required: true, autocomplete: "off" }),
        field({ label: "Mot de passe", name: "password", type: "password", hint: "Au moins 12 caractères, dont 3 types parmi : minuscules, majuscules, chiffres, symboles.", required: true, autocomplete: "new-password" }),
        field({ label: "Confirmez le mot de passe", name: "password2", type: "password", required: true, autocomplete: "new-password" }),
        h("fieldset", {},
          h("legend", {}, "Où recevoir vos codes de connexion (au moins un)"),
          field({ label: "Adresse électronique", name: "email", type: "email", autocomplete: "email" }),
          field({ label: "Téléphone mobile", name: "mobile", type: "tel", hint: "Exemple : 06 12 34 56 78", autocomplete: "tel" })),
      ],
      async action(f) {
        const ins = normalizeIns(value(f, "ins"));
        const missing = {};
        if (!ins) missing.ins = "Indiquez votre numéro de sécurité sociale.";
        if (!value(f, "code")) missing.code = "Indiquez le code d'activation.";
        if (!value(f, "password")) missing.password = "Choisissez un mot de passe.";
        if (value(f, "password") !== value(f, "password2")) missing.password2 = "Les deux mots de passe sont différents.";
        if (!value(f, "email") && !value(f, "mobile")) missing.email = "Indiquez une adresse électronique ou un mobile.";
        if (Object.keys(missing).length) throw invalid("Le formulaire contient des erreurs.", missing);
        await ctx.api.rpc("RegisterPatientAccount", {
          ins,
          creationCode: value(f, "code"),
          password: f.elements.namedItem("password").value,
          email: value(f, "email"),
          mobilePhone: toE164(value(f, "mobile")),
          requestId: ctx.api.requestId(),
        });
        f.hidden = true;
        done.append(
          h("p", {}, "Votre compte est activé. Vous pouvez maintenant vous connecter."),
          h("a", { href: "#/connexion", class: "bouton" }, "Me connecter"),
        );
        done.hidden = false;
        done.setAttribute("tabindex", "-1");
        done.focus();
      },
    });
    return h("div", {}, el, done,
      h("p", {}, "Déjà activé ? ", h("a", { href: "#/connexion" }, "Se connecter")));
  },
};

export const connexion = {
  title: "Se connecter",
  needsSession: false,
  onlySignedOut: true,
  async render(ctx) {
    const container = h("div", {});
    const step1 = form({
      label: "Identifiant et mot de passe",
      submit: "Continuer",
      children: [
        field({ label: "Numéro de sécurité sociale", name: "ins", hint: INS_HINT, required: true, autocomplete: "username", maxlength: 20 }),
        field({ label: "Mot de passe", name: "password", type: "password", required: true, autocomplete: "current-password" }),
      ],
      async action(f) {
        const ins = normalizeIns(value(f, "ins"));
        const password = f.elements.namedItem("password").value;
        const missing = {};
        if (!ins) missing.ins = "Indiquez votre numéro de sécurité sociale.";
        if (!password) missing.password = "Indiquez votre mot de passe.";
        if (Object.keys(missing).length) throw invalid("Le formulaire contient des erreurs.", missing);
        const started = await ctx.api.rpc("StartLogin", { identifier: ins, password, requestId: ctx.api.requestId() });
        f.elements.namedItem("password").value = "";
        container.replaceChildren(codeStep(ctx, started));
        const heading = container.querySelector("h2");
        heading.focus();
      },
    });
    container.append(step1,
      h("p", {}, "Première visite ? ", h("a", { href: "#/activer" }, "Activer mon DMP avec mon code d'activation")));
    return container;
  },
};

function codeStep(ctx, started) {
  const where = started.channel === "DELIVERY_CHANNEL_SMS" ? "par SMS au" : "par courriel à";
  const step = form({
    label: "Code de connexion",
    submit: "Me connecter",
    children: [
      field({ label: "Code reçu (6 chiffres)", name: "code", required: true, autocomplete: "one-time-code", inputmode: "numeric", maxlength: 6, pattern: "[0-9]{6}" }),
    ],
    async action(f) {
      const code = value(f, "code").replace(/\s+/g, "");
      if (!/^\d{6}$/.test(code)) throw invalid("Le code contient 6 chiffres.", { code: "Saisissez les 6 chiffres reçus." });
      const session = await ctx.api.login(started.challenge, code);
      await ctx.onSignedIn(session);
      ctx.navigate("accueil");
    },
  });
  const restart = h("button", { type: "button", class: "bouton-secondaire" }, "Recommencer la connexion");
  on(restart, "click", () => ctx.rerender());
  return h("section", { "aria-labelledby": "titre-code" },
    h("h2", { id: "titre-code", tabindex: "-1" }, "Saisissez votre code"),
    h("p", { role: "status" }, `Un code vient de vous être envoyé ${where} ${started.maskedDestination}. Il est valable quelques minutes.`),
    step, restart);
}
