// Every page of the portal, by the name its fragment carries (#/name).

import { connexion, activer } from "./public.js";
import { documents, ajouter } from "./documents.js";
import { profil } from "./profil.js";
import { professionnels } from "./professionnels.js";
import { acces } from "./acces.js";
import { accueil, directives, vaccinations, soins, urgence, contact, dossier, enfants } from "./more.js";

export const VIEWS = {
  connexion, activer, accueil, documents, ajouter, profil, directives, vaccinations, soins,
  professionnels, acces, urgence, contact, dossier, enfants,
};

/** The menu, in the order a patient looks for things. */
export const MENU = [
  ["accueil", "Accueil"],
  ["documents", "Mes documents"],
  ["ajouter", "Ajouter un document"],
  ["profil", "Mon profil médical"],
  ["vaccinations", "Mes vaccinations"],
  ["directives", "Directives anticipées"],
  ["soins", "Remboursements de soins"],
  ["professionnels", "Mes professionnels"],
  ["acces", "Historique des accès"],
  ["urgence", "Accès en urgence"],
  ["contact", "Notifications"],
  ["dossier", "Mon dossier"],
  ["enfants", "Dossiers de mes enfants"],
];
