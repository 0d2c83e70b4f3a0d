// Plain-French words for the API's codes and error reasons.

export const PROFESSIONS = {
  10: "Médecin", 21: "Pharmacien", 26: "Audioprothésiste", 28: "Opticien-lunetier",
  31: "Assistant dentaire", 32: "Physicien médical", 40: "Chirurgien-dentiste", 50: "Sage-femme",
  60: "Infirmier", 69: "Infirmier psychiatrique", 70: "Masseur-kinésithérapeute",
  80: "Pédicure-podologue", 81: "Orthoprothésiste", 82: "Podo-orthésiste",
  83: "Orthopédiste-orthésiste", 84: "Oculariste", 85: "Épithésiste",
  86: "Technicien de laboratoire médical", 91: "Orthophoniste", 92: "Orthoptiste",
  94: "Ergothérapeute", 95: "Diététicien", 96: "Psychomotricien", 98: "Manipulateur radio",
};

export const DOCUMENT_STATUS = {
  DOCUMENT_STATUS_CURRENT: "Version en cours",
  DOCUMENT_STATUS_DEPRECATED: "Remplacé par une version plus récente",
  DOCUMENT_STATUS_ARCHIVED: "Archivé",
  DOCUMENT_STATUS_DELETED: "Supprimé",
};

export const SEVERITY = [
  ["ALLERGY_SEVERITY_UNSPECIFIED", "Je ne sais pas"],
  ["ALLERGY_SEVERITY_MILD", "Légère"],
  ["ALLERGY_SEVERITY_MODERATE", "Modérée"],
  ["ALLERGY_SEVERITY_SEVERE", "Sévère"],
];

export const CONDITION_CATEGORY = {
  CONDITION_CATEGORY_CURRENT_PATHOLOGY: "Maladie en cours",
  CONDITION_CATEGORY_MEDICAL_HISTORY: "Antécédent médical",
  CONDITION_CATEGORY_SURGICAL_HISTORY: "Antécédent chirurgical",
  CONDITION_CATEGORY_FAMILY_HISTORY: "Antécédent familial",
};

export const ABO = { ABO_GROUP_A: "A", ABO_GROUP_B: "B", ABO_GROUP_AB: "AB", ABO_GROUP_O: "O" };
export const RHESUS = { RHESUS_FACTOR_POSITIVE: "positif", RHESUS_FACTOR_NEGATIVE: "négatif" };

export const ACCESS_MODE = {
  ACCESS_MODE_NORMAL: "Accès normal",
  ACCESS_MODE_BRIS_DE_GLACE: "Accès d'urgence (bris de glace)",
  ACCESS_MODE_CENTRE_15: "Régulation du SAMU (centre 15)",
};

export const ACTION = {
  ACTION_READ: "a consulté",
  ACTION_WRITE: "a ajouté ou modifié",
  ACTION_DELETE: "a supprimé",
  ACTION_READ_ADMINISTRATIVE: "a consulté les informations administratives",
  ACTION_MANAGE_RECORD: "a géré le dossier",
  ACTION_MANAGE_CONSENT: "a modifié les autorisations",
  ACTION_EMERGENCY_ACCESS: "a ouvert un accès d'urgence",
  ACTION_READ_ACCESS_LOG: "a consulté l'historique des accès",
  ACTION_READ_ACCESS_RULES: "a consulté les autorisations",
  ACTION_CHECK_EXISTENCE: "a vérifié l'existence du dossier",
};

export const RESOURCE_KIND = {
  RESOURCE_KIND_DOSSIER: "le dossier",
  RESOURCE_KIND_DOCUMENT: "un document",
  RESOURCE_KIND_HEALTH_PROFILE: "le profil médical",
  RESOURCE_KIND_VACCINATION: "le carnet de vaccination",
  RESOURCE_KIND_CARE_HISTORY: "l'historique des soins",
  RESOURCE_KIND_ACCESS_RULE: "les autorisations",
  RESOURCE_KIND_ACCESS_LOG: "l'historique des accès",
  RESOURCE_KIND_ADVANCE_DIRECTIVES: "les directives anticipées",
};

/** Actions whose label is a bare verb: the sentence names the resource after it. The other
 * labels already name what was accessed ("a consulté l'historique des accès"), so adding the
 * resource would say it twice. */
const BARE_ACTIONS = new Set(["ACTION_READ", "ACTION_WRITE", "ACTION_DELETE"]);

/** The "Quoi" sentence of an access-history entry (`action`, `resourceKind`, proto3 JSON). */
export function accessWhat(entry) {
  const label = ACTION[entry.action];
  if (label && !BARE_ACTIONS.has(entry.action)) return label;
  return `${label || "a accédé à"} ${RESOURCE_KIND[entry.resourceKind] || "votre dossier"}`;
}

export const PRINCIPAL_KIND = {
  PRINCIPAL_KIND_PATIENT: "Vous",
  PRINCIPAL_KIND_LEGAL_REPRESENTATIVE: "Un représentant légal",
  PRINCIPAL_KIND_STAFF: "Un agent de l'Assurance Maladie",
  PRINCIPAL_KIND_SERVICE: "Un service de la plateforme",
};

export const RULE_KIND = {
  ACCESS_RULE_KIND_GRANT: "Autorisé",
  ACCESS_RULE_KIND_BLOCK: "Bloqué",
  ACCESS_RULE_KIND_ATTENDING_PHYSICIAN: "Médecin traitant",
  ACCESS_RULE_KIND_EMERGENCY_ACCESS: "Accès d'urgence",
};

export const CLOSE_REASONS = [
  ["CLOSE_REASON_PATIENT_REQUEST", "Je ne souhaite plus utiliser mon dossier"],
  ["CLOSE_REASON_LEFT_SCHEME", "Je ne relève plus de l'Assurance Maladie française"],
  ["CLOSE_REASON_OTHER", "Autre raison (à préciser)"],
];

export const CHANNEL = { CHANNEL_EMAIL: "Courriel", CHANNEL_SMS: "SMS" };

export const NOTIFICATION_KINDS = [
  ["NOTIFICATION_KIND_DOCUMENT_ADDED", "Un nouveau document est ajouté"],
  ["NOTIFICATION_KIND_FIRST_ACCESS", "Un professionnel consulte mon dossier pour la première fois"],
  ["NOTIFICATION_KIND_DOSSIER_LIFECYCLE", "Mon dossier est fermé ou réactivé"],
  ["NOTIFICATION_KIND_ACCESS_RULES_CHANGED", "Quelqu'un d'autre modifie mes autorisations"],
  ["NOTIFICATION_KIND_ADVANCE_DIRECTIVES_CHANGED", "Mes directives anticipées changent"],
  ["NOTIFICATION_KIND_VACCINATION_REMINDER", "Un rappel de vaccin approche"],
];

export const CLAIM_KIND = {
  line: "Soin",
  drug: "Médicament délivré",
  medicalAct: "Acte médical",
  biology: "Analyse de biologie",
  medicalDevice: "Dispositif médical",
  hospitalStay: "Hospitalisation",
  vaccine: "Vaccin",
};

// Document types a patient may add themselves (class 90, document_types.csv).
export const PATIENT_DOCUMENT_TYPES = [
  ["EXPPAT_2", "Autre document du patient"],
  ["EXPPAT_1", "Volontés et droits du patient"],
  ["EXPPAT_3", "Directives anticipées"],
  ["74465-6", "Questionnaire patient"],
];

const REASONS = {
  INVALID_CREDENTIALS: "Identifiant ou mot de passe incorrect.",
  ACCOUNT_THROTTLED: "Trop d'essais. Patientez quelques minutes avant de réessayer.",
  OTP_INVALID: "Ce code n'est pas le bon. Vérifiez le dernier code reçu.",
  OTP_MALFORMED: "Le code contient 6 chiffres.",
  OTP_EXPIRED: "Ce code a expiré. Recommencez la connexion pour en recevoir un nouveau.",
  OTP_ALREADY_USED: "Ce code a déjà servi. Recommencez la connexion.",
  OTP_LOCKED: "Trop de codes erronés. Patientez avant de recommencer la connexion.",
  INS_MALFORMED: "Le numéro doit comporter 15 caractères (13 chiffres et la clé).",
  INS_KEY_MISMATCH: "La clé du numéro ne correspond pas. Vérifiez les deux derniers chiffres.",
  CREATION_CODE_INVALID: "Ce code d'activation n'est pas valable pour ce numéro.",
  CREATION_CODE_EXPIRED: "Ce code d'activation a expiré. Demandez-en un nouveau.",
  CREATION_CODE_ALREADY_USED: "Ce code d'activation a déjà servi.",
  CREATION_CODE_MALFORMED: "Le code d'activation n'a pas le bon format. Recopiez-le tel qu'il figure sur le courrier.",
  EMAIL_INVALID: "Cette adresse électronique n'est pas valable.",
  PHONE_INVALID: "Ce numéro de mobile n'est pas valable (exemple : 06 12 34 56 78).",
  LOGIN_THROTTLED: "Trop d'essais. Patientez quelques minutes avant de réessayer.",
  CODE_DELIVERY_FAILED: "Le code n'a pas pu vous être envoyé. Réessayez dans quelques instants.",
  ACCOUNT_EXISTS: "Un compte existe déjà pour ce numéro. Connectez-vous.",
  PASSWORD_POLICY: "Le mot de passe doit comporter au moins 12 caractères et 3 types parmi : minuscules, majuscules, chiffres, symboles.",
  CONTACT_REQUIRED: "Indiquez une adresse électronique ou un numéro de téléphone mobile.",
  DOSSIER_CLOSED: "Ce dossier est fermé. Vous pouvez le réactiver depuis la page « Mon dossier ».",
  TERMS_NOT_ACCEPTED: "Vous devez accepter les conditions d'utilisation.",
  NOT_FOUND: "Cet élément n'existe pas ou n'est plus accessible.",
  ETAG_MISMATCH: "Ces informations ont changé entre-temps. La page a été rechargée : recommencez.",
  PROFESSIONAL_NOT_FOUND: "Ce professionnel n'est pas dans l'annuaire.",
  PROFESSIONAL_BLOCKED: "Ce professionnel est bloqué. Débloquez-le d'abord.",
  INVALID_CSRF_TOKEN: "Votre session a expiré. Reconnectez-vous.",
  SESSION_COOKIE_REQUIRED: "Vous n'êtes pas connecté ou votre session a expiré.",
  SESSION_COOKIE_MISSING: "Vous n'êtes pas connecté ou votre session a expiré.",
  SESSION_REVOKED: "Votre session est terminée. Reconnectez-vous.",
  TOKEN_EXPIRED: "Votre session a expiré. Reconnectez-vous.",
  BODY_TOO_LARGE: "Ce fichier est trop volumineux.",
  RATE_LIMITED: "Trop de demandes. Patientez un instant puis réessayez.",
  CHANNEL_WITHOUT_CONTACT: "Un moyen de contact choisi n'a pas d'adresse ou de numéro renseigné.",
  NETWORK: "Le service ne répond pas. Vérifiez votre connexion et réessayez.",
};

/** A sentence for the patient from an ApiError (never the raw server text). */
export function errorMessage(err) {
  if (err && err.reason && REASONS[err.reason]) return REASONS[err.reason];
  if (err && err.status === 401) return REASONS.SESSION_COOKIE_REQUIRED;
  if (err && err.status === 403) return "Cette action ne vous est pas permise.";
  if (err && err.status === 429) return REASONS.RATE_LIMITED;
  if (err && err.status === 413) return REASONS.BODY_TOO_LARGE;
  if (err && err.status === 400) return "Certaines informations ne sont pas valables. Vérifiez le formulaire.";
  return "Une erreur est survenue. Réessayez dans quelques instants.";
}

export function professionLabel(code) {
  return PROFESSIONS[code] || "Professionnel de santé";
}
