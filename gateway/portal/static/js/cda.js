// A CDA R2 document made readable: its title, dates and the narrative
// ("human-readable") block of each section, rebuilt as new DOM elements from
// a short list of narrative tags. Nothing of the XML is ever handed to the
// HTML parser: text becomes text nodes, attributes are dropped (except a
// table cell's span counts), unknown elements keep only their text. The
// browser's XML parser loads no external entity and runs nothing.

import { h, formatDateTime } from "./dom.js";

const NS = "urn:hl7-org:v3";

// CDA narrative element → the HTML element that carries the same meaning.
const NARRATIVE = {
  paragraph: "p",
  list: "ul",
  item: "li",
  table: "table",
  caption: "caption",
  thead: "thead",
  tbody: "tbody",
  tfoot: "tfoot",
  tr: "tr",
  th: "th",
  td: "td",
  content: "span",
  sub: "sub",
  sup: "sup",
  footnote: "small",
};

function children(el, localName) {
  return Array.from(el.children).filter((c) => c.namespaceURI === NS && c.localName === localName);
}

function child(el, localName) {
  return children(el, localName)[0] || null;
}

function hl7Time(value) {
  // "20240115103000+0100" → an ISO date the portal formats in French.
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec(value || "");
  if (!m) return "";
  const [, y, mo, d, hh = "12", mi = "00", ss = "00", tz] = m;
  const zone = tz ? `${tz.slice(0, 3)}:${tz.slice(3)}` : "Z";
  return formatDateTime(`${y}-${mo}-${d}T${hh}:${mi}:${ss}${zone}`);
}

function personName(el) {
  if (!el) return "";
  const parts = [];
  for (const c of Array.from(el.children)) {
    if (c.localName === "prefix" || c.localName === "given" || c.localName === "family") parts.push(c.textContent.trim());
  }
  return parts.filter(Boolean).join(" ");
}

function narrative(node) {
  const out = [];
  for (const c of Array.from(node.childNodes)) {
    if (c.nodeType === Node.TEXT_NODE || c.nodeType === Node.CDATA_SECTION_NODE) {
      if (c.nodeValue) out.push(document.createTextNode(c.nodeValue));
      continue;
    }
    if (c.nodeType !== Node.ELEMENT_NODE) continue;
    const name = c.localName;
    if (name === "br") {
      out.push(document.createElement("br"));
      continue;
    }
    if (name === "renderMultiMedia") continue;
    if (name === "list" && c.getAttribute("listType") === "ordered") {
      const ol = document.createElement("ol");
      ol.append(...narrative(c));
      out.push(ol);
      continue;
    }
    const tag = NARRATIVE[name];
    if (!tag) {
      out.push(...narrative(c)); // linkHtml, col, colgroup…: text only
      continue;
    }
    const el = document.createElement(tag);
    if (tag === "td" || tag === "th") {
      for (const span of ["colspan", "rowspan"]) {
        const n = Number.parseInt(c.getAttribute(span) || "", 10);
        if (n > 1 && n < 100) el.setAttribute(span, String(n));
      }
    }
    el.append(...narrative(c));
    out.push(el);
  }
  return out;
}

function section(sectionEl, level) {
  const wrapper = h("section", { class: "section-cda" });
  const title = child(sectionEl, "title");
  const headingLevel = Math.min(level, 6);
  if (title && title.textContent.trim()) wrapper.append(h(`h${headingLevel}`, {}, title.textContent.trim().replace(/\s+/g, " ")));
  const text = child(sectionEl, "text");
  if (text) {
    const body = h("div", { class: "texte-cda" }, narrative(text));
    if (body.textContent.trim()) wrapper.append(body);
  }
  for (const component of children(sectionEl, "component")) {
    const sub = child(component, "section");
    if (sub) wrapper.append(section(sub, level + 1));
  }
  return wrapper;
}

/**
 * The readable rendering of the CDA `xmlText`, or null when it is not a CDA
 * document (the caller then offers the file to download).
 */
export function renderCda(xmlText) {
  const parsed = new DOMParser().parseFromString(xmlText, "application/xml");
  const root = parsed.documentElement;
  if (!root || root.localName !== "ClinicalDocument" || root.namespaceURI !== NS || parsed.querySelector("parsererror")) {
    return null;
  }
  const title = child(root, "title");
  const effective = child(root, "effectiveTime");
  const author = child(root, "author");
  const assigned = author && child(author, "assignedAuthor");
  const person = assigned && child(assigned, "assignedPerson");
  const org = assigned && child(assigned, "representedOrganization");
  const out = h("article", { class: "document-lu", "aria-labelledby": "titre-cda" },
    h("h2", { id: "titre-cda", tabindex: "-1" }, title ? title.textContent.trim() : "Document"));
  const infos = h("dl", { class: "infos" });
  const date = effective ? hl7Time(effective.getAttribute("value")) : "";
  if (date) infos.append(h("dt", {}, "Date du document"), h("dd", {}, date));
  const who = personName(person && child(person, "name"));
  if (who) infos.append(h("dt", {}, "Auteur"), h("dd", {}, who));
  const orgName = org && child(org, "name");
  if (orgName && orgName.textContent.trim()) infos.append(h("dt", {}, "Établissement"), h("dd", {}, orgName.textContent.trim()));
  if (infos.children.length) out.append(infos);
  const component = child(root, "component");
  const structured = component && child(component, "structuredBody");
  if (structured) {
    for (const comp of children(structured, "component")) {
      const s = child(comp, "section");
      if (s) out.append(section(s, 3));
    }
  } else if (component && child(component, "nonXMLBody")) {
    out.append(h("p", {}, "Ce document contient un fichier joint : utilisez « Télécharger » pour l'ouvrir."));
  }
  return out;
}
