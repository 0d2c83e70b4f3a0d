// The portal's shell: session, navigation between pages, focus and
// announcements. Pages are named in the URL fragment (#/documents) and
// nothing else goes there: which document is open, what was typed, stays
// in memory.

import * as api from "./api.js";
import { h, clear, on } from "./dom.js";
import { errorMessage } from "./labels.js";
import { VIEWS, MENU } from "./views/index.js";

const state = {
  session: null, // {account, session, dossier, ins} from the door; no token
  records: [], // [{name, label, own}] the patient's record and those of children they represent
  current: "", // the record shown
  flash: "", // a message to show on the next page (e.g. after logout)
};

const main = document.getElementById("contenu");
const status = document.getElementById("annonce");
const menu = document.getElementById("menu");
const menuButton = document.getElementById("bouton-menu");
const account = document.getElementById("compte");

/** Says `message` to screen readers without moving the focus. */
function announce(message) {
  status.textContent = "";
  // A new text node in a live region is read even when the text repeats.
  window.setTimeout(() => {
    status.textContent = message;
  }, 50);
}

function navigate(view) {
  if (location.hash === `#/${view}`) {
    show(view, true);
  } else {
    location.hash = `#/${view}`;
  }
}

function ctx() {
  return {
    api,
    state,
    announce,
    navigate,
    dossier: state.current,
    isOwnRecord: state.records.length === 0 || state.records.some((r) => r.name === state.current && r.own),
    onSignedIn,
    refreshAccount: renderAccount,
    rerender: () => show(currentView(), true),
  };
}

function currentView() {
  const match = /^#\/([a-z-]+)$/.exec(location.hash);
  if (match && VIEWS[match[1]]) return match[1];
  return state.session ? "accueil" : "connexion";
}

function renderMenu(active) {
  clear(menu);
  if (!state.session) {
    menu.hidden = true;
    menuButton.hidden = true;
    return;
  }
  menuButton.hidden = false;
  const list = h("ul", { class: "menu-liste" });
  for (const [view, label] of MENU) {
    const link = h("a", { href: `#/${view}`, "aria-current": view === active ? "page" : null }, label);
    on(link, "click", () => closeMenu());
    list.append(h("li", {}, link));
  }
  menu.append(list);
  menu.hidden = false;
}

function closeMenu() {
  menuButton.setAttribute("aria-expanded", "false");
  menu.classList.remove("ouvert");
}

on(menuButton, "click", () => {
  const open = menuButton.getAttribute("aria-expanded") !== "true";
  menuButton.setAttribute("aria-expanded", String(open));
  menu.classList.toggle("ouvert", open);
});

function renderAccount() {
  clear(account);
  if (!state.session) return;
  if (state.records.length > 1) {
    const select = h("select", { id: "dossier-affiche", name: "dossier" });
    for (const record of state.records) {
      select.append(h("option", { value: record.name, selected: record.name === state.current }, record.label));
    }
    on(select, "change", () => {
      state.current = select.value;
      const chosen = state.records.find((r) => r.name === state.current);
      announce(`Dossier affiché : ${chosen ? chosen.label : ""}`);
      show(currentView(), true);
    });
    account.append(h("div", { class: "bascule" }, h("label", { for: "dossier-affiche" }, "Dossier affiché"), select));
  }
  const logoutButton = h("button", { type: "button", class: "bouton-secondaire" }, "Se déconnecter");
  on(logoutButton, "click", async () => {
    logoutButton.disabled = true;
    try {
      await api.logout();
    } catch (err) {
      // The session may already be over; either way the page forgets it.
    }
    forget("Vous êtes déconnecté. À bientôt.");
  });
  account.append(logoutButton);
}

function forget(message) {
  state.session = null;
  state.records = [];
  state.current = "";
  state.flash = message;
  api.setCsrfToken("");
  renderAccount();
  navigate("connexion");
}

async function onSignedIn(session) {
  state.session = session;
  const own = { name: session.dossier, label: "Mon dossier", own: true };
  const known = state.records.filter((r) => !r.own);
  state.records = [own, ...known];
  state.current = session.dossier;
  renderAccount();
}

let rendering = 0;

async function show(view, moveFocus) {
  const spec = VIEWS[view];
  const ticket = ++rendering;
  if (spec.needsSession && !state.session) {
    navigate("connexion");
    return;
  }
  if (!spec.needsSession && state.session && spec.onlySignedOut) {
    navigate("accueil");
    return;
  }
  renderMenu(view);
  document.title = `${spec.title} — Mon DMP`;
  const heading = h("h1", { id: "titre-page", tabindex: "-1" }, spec.title);
  const body = h("div", { class: "page-corps", "aria-busy": "true" }, h("p", { class: "chargement" }, "Chargement…"));
  clear(main);
  main.append(heading);
  if (state.flash) {
    main.append(h("p", { class: "bandeau-info", role: "status" }, state.flash));
    state.flash = "";
  }
  main.append(body);
  if (moveFocus) heading.focus();
  let content;
  try {
    content = await spec.render(ctx());
  } catch (err) {
    if (err && err.sessionEnded) {
      forget("Votre session est terminée. Reconnectez-vous.");
      return;
    }
    content = h("p", { class: "erreur-formulaire", role: "alert" }, errorMessage(err));
  }
  if (ticket !== rendering) return;
  clear(body);
  body.removeAttribute("aria-busy");
  body.append(content);
}

// The skip link moves the focus itself: its own fragment would otherwise
// replace the page's name in the address.
on(document.querySelector(".lien-evitement"), "click", (event) => {
  event.preventDefault();
  main.focus();
});

on(window, "hashchange", () => {
  if (!location.hash.startsWith("#/")) return; // the skip link's own anchor
  show(currentView(), true);
});

async function start() {
  try {
    const session = await api.session();
    await onSignedIn(session);
  } catch (err) {
    state.session = null;
  }
  show(currentView(), false);
}

start();
