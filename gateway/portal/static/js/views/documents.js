// Documents of the record: list, read (CDA made readable, text shown, other
// files downloaded), mask from professionals, and the patient's own upload.

import { h, on, clear, field, formatDate } from "../dom.js";
import { renderCda } from "../cda.js";
import { DOCUMENT_STATUS, PATIENT_DOCUMENT_TYPES, professionLabel } from "../labels.js";
import { actionButton, all, empty, form, invalid, value } from "./common.js";

const MASKED = "CONFIDENTIALITY_FLAG_MASQUE_PS";
const MAX_UPLOAD = 20 * 1024 * 1024;

function authorOf(doc) {
  const author = doc.author || {};
  if (author.kind === "AUTHOR_KIND_PATIENT") return "Vous";
  if (author.kind === "AUTHOR_KIND_LEGAL_REPRESENTATIVE") return "Un représentant légal";
  const name = author.displayName || "Professionnel de santé";
  return author.professionCode ? `${name}, ${professionLabel(author.professionCode)}` : name;
}

function isMasked(doc) {
  return (doc.confidentialityFlags || []).includes(MASKED);
}

function bytesFromBase64(b64) {
  const binary = atob(b64 || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const FORMATS = {
  DOCUMENT_FORMAT_PDF: ["application/pdf", "pdf"],
  DOCUMENT_FORMAT_JPEG: ["image/jpeg", "jpg"],
  DOCUMENT_FORMAT_PNG: ["image/png", "png"],
  DOCUMENT_FORMAT_CDA_XML: ["text/xml", "xml"],
  DOCUMENT_FORMAT_TEXT_PLAIN: ["text/plain", "txt"],
};

function downloadLink(doc, bytes) {
  const [mime, ext] = FORMATS[doc.format] || ["application/octet-stream", "bin"];
  const url = URL.createObjectURL(new Blob([bytes], { type: mime }));
  const safeTitle = (doc.title || "document").replace(/[^\p{L}\p{N} _-]+/gu, "").trim().slice(0, 80) || "document";
  return h("a", { href: url, download: `${safeTitle}.${ext}`, class: "bouton bouton-secondaire" },
    "Télécharger le document", h("span", { class: "lecteur-seulement" }, ` ${doc.title}`));
}

async function openDocument(ctx, container, name, backTo) {
  clear(container);
  container.append(h("p", { class: "chargement" }, "Ouverture du document…"));
  const doc = await ctx.api.rpc("GetDocument", { name, view: "DOCUMENT_VIEW_FULL" });
  const bytes = bytesFromBase64(doc.content);
  clear(container);
  const back = h("button", { type: "button", class: "bouton-secondaire" }, "Retour à mes documents");
  on(back, "click", () => backTo());
  let body = null;
  if (doc.format === "DOCUMENT_FORMAT_CDA_XML") {
    body = renderCda(new TextDecoder("utf-8").decode(bytes));
  }
  if (!body) {
    body = h("article", { class: "document-lu", "aria-labelledby": "titre-cda" },
      h("h2", { id: "titre-cda", tabindex: "-1" }, doc.title || "Document"));
    if (doc.format === "DOCUMENT_FORMAT_TEXT_PLAIN" || doc.format === "DOCUMENT_FORMAT_CDA_XML") {
      body.append(h("pre", {}, new TextDecoder("utf-8").decode(bytes)));
    } else {
      body.append(h("p", {}, "Ce document s'ouvre avec le bouton « Télécharger le document »."));
    }
  }
  const infos = h("dl", { class: "infos" },
    h("dt", {}, "Ajouté le"), h("dd", {}, formatDate(doc.createTime)),
    h("dt", {}, "Auteur"), h("dd", {}, authorOf(doc)),
    h("dt", {}, "Visibilité"), h("dd", {}, isMasked(doc) ? "Masqué aux professionnels (sauf l'auteur et votre médecin traitant)" : "Visible par les professionnels autorisés"));
  container.append(h("div", { class: "actions" }, back, downloadLink(doc, bytes)), infos, body);
  container.querySelector("#titre-cda").focus();
  ctx.announce(`Document ouvert : ${doc.title}`);
}

function card(ctx, doc, openIt, refresh) {
  const titleId = `doc-${doc.name.split("/").pop()}`;
  const masked = isMasked(doc);
  const read = h("button", { type: "button", "aria-describedby": titleId }, "Lire");
  on(read, "click", () => openIt(doc.name));
  const mask = actionButton(masked ? "Ne plus masquer" : "Masquer aux professionnels", async () => {
    const request = { name: doc.name, etag: doc.etag, requestId: ctx.api.requestId() };
    if (masked) request.clearFlags = [MASKED];
    else request.setFlags = [MASKED];
    await ctx.api.rpc("UpdateDocumentVisibility", request);
    await refresh(masked ? `« ${doc.title} » est de nouveau visible par les professionnels autorisés.` : `« ${doc.title} » est masqué aux professionnels.`, doc.name);
  }, { describedBy: titleId });
  mask.dataset.document = doc.name;
  read.dataset.document = doc.name;
  return h("li", { class: "carte" },
    h("h2", { id: titleId }, doc.title || "Document sans titre"),
    h("p", { class: "meta" },
      `Ajouté le ${formatDate(doc.createTime)} · ${authorOf(doc)}`,
      doc.status && doc.status !== "DOCUMENT_STATUS_CURRENT" ? ` · ${DOCUMENT_STATUS[doc.status] || ""}` : ""),
    masked ? h("p", {}, h("span", { class: "etiquette" }, "Masqué aux professionnels")) : null,
    h("div", { class: "actions" }, read, mask));
}

export const documents = {
  title: "Mes documents",
  needsSession: true,
  async render(ctx) {
    const container = h("div", {});
    const showList = async (message = "", focusDoc = "") => {
      const docs = await all(ctx.api, "ListDocuments", { parent: ctx.dossier }, "documents");
      clear(container);
      if (message) container.append(h("p", { class: "succes", role: "status" }, message));
      container.append(h("p", {}, "Les documents déposés par vos professionnels de santé et par vous-même. Masquer un document le cache aux professionnels, sauf à son auteur et à votre médecin traitant."));
      container.append(h("p", {}, h("a", { href: "#/ajouter" }, "Ajouter un document")));
      if (!docs.length) {
        container.append(empty("Aucun document pour le moment."));
        return;
      }
      const list = h("ul", { class: "cartes", "aria-label": `${docs.length} document${docs.length > 1 ? "s" : ""}` });
      for (const doc of docs) list.append(card(ctx, doc, (name) => openDocument(ctx, container, name, () => showList("", name)), showList));
      container.append(list);
      if (focusDoc) {
        const target = container.querySelector(`button[data-document="${CSS.escape(focusDoc)}"]`);
        if (target) target.focus();
      }
    };
    await showList();
    return container;
  },
};

export const ajouter = {
  title: "Ajouter un document",
  needsSession: true,
  async render(ctx) {
    const done = h("div", {});
    const el = form({
      label: "Ajouter un document",
      submit: "Ajouter le document",
      children: [
        h("p", {}, "Ajoutez un document utile à vos soins (PDF, image JPEG ou PNG, texte ; 20 Mo au plus). Il sera visible par les professionnels que vous autorisez."),
        field({ label: "Fichier", name: "fichier", type: "file", required: true }),
        field({ label: "Titre du document", name: "titre", required: true, maxlength: 255, hint: "Par exemple : Résultats de prise de sang de mars" }),
        field({ label: "Type de document", name: "type", options: PATIENT_DOCUMENT_TYPES, value: "EXPPAT_2" }),
      ],
      async action(f) {
        const file = f.elements.namedItem("fichier").files[0];
        const title = value(f, "titre");
        const missing = {};
        if (!file) missing.fichier = "Choisissez un fichier.";
        if (!title) missing.titre = "Donnez un titre au document.";
        if (file && file.size > MAX_UPLOAD) missing.fichier = "Ce fichier dépasse 20 Mo.";
        const format = file ? formatOf(file) : "";
        if (file && !format) missing.fichier = "Ce type de fichier n'est pas accepté (PDF, JPEG, PNG ou texte).";
        if (Object.keys(missing).length) throw invalid("Le formulaire contient des erreurs.", missing);
        const bytes = new Uint8Array(await file.arrayBuffer());
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        const now = new Date().toISOString();
        await ctx.api.rpc("CreateDocument", {
          parent: ctx.dossier,
          document: { title, typeCode: value(f, "type"), format, content: btoa(binary), serviceStartTime: now },
          requestId: ctx.api.requestId(),
        });
        f.reset();
        clear(done);
        done.append(h("p", { class: "succes", role: "status" }, `« ${title} » a été ajouté à votre dossier. `, h("a", { href: "#/documents" }, "Voir mes documents")));
      },
    });
    return h("div", {}, done, el);
  },
};

function formatOf(file) {
  const name = file.name.toLowerCase();
  if (file.type === "application/pdf" || name.endsWith(".pdf")) return "DOCUMENT_FORMAT_PDF";
  if (file.type === "image/jpeg" || /\.jpe?g$/.test(name)) return "DOCUMENT_FORMAT_JPEG";
  if (file.type === "image/png" || name.endsWith(".png")) return "DOCUMENT_FORMAT_PNG";
  if (file.type === "text/plain" || name.endsWith(".txt")) return "DOCUMENT_FORMAT_TEXT_PLAIN";
  return "";
}
