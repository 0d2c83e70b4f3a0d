// HTTP bindings of the RPCs the portal calls: the google.api.http
// annotations of protos/ (AIP-127), written out so the page needs no build
// step. tests/portal/test_portal_static.py checks each line against the
// annotations, so a proto change that moves a route fails the suite.
//
// `path`: the template, field paths in the JSON (lowerCamelCase) spelling;
// `body`: "*" (every other field in the body), a field name (that field is
// the body, the rest goes in the query), or absent (GET/DELETE: the rest in
// the query). `query`: the only fields allowed in a URL, none of them medical.

export const SESSION = {
  whoami: "/v1/session",
  login: "/v1/session",
  refresh: "/v1/session:refresh",
  logout: "/v1/session:logout",
  csrfHeader: "X-DMP-CSRF",
  csrfCookie: "__Host-dmp_csrf",
};

const PAGING = ["pageSize", "pageToken"];

export const ROUTES = {
  // identity
  RegisterPatientAccount: { verb: "POST", path: "/v1/accounts:register", body: "*", anonymous: true },
  StartLogin: { verb: "POST", path: "/v1/accounts:startLogin", body: "*", anonymous: true },
  ListProfessionals: { verb: "GET", path: "/v1/professionals", query: [...PAGING, "filter"] },
  // records
  GetDossier: { verb: "GET", path: "/v1/{name}" },
  CloseDossier: { verb: "POST", path: "/v1/{name}:close", body: "*" },
  ReactivateDossier: { verb: "POST", path: "/v1/{name}:reactivate", body: "*" },
  AcceptTermsOfUse: { verb: "POST", path: "/v1/{name}:acceptTermsOfUse", body: "*" },
  ListDocuments: { verb: "GET", path: "/v1/{parent}/documents", query: [...PAGING, "orderBy"] },
  GetDocument: { verb: "GET", path: "/v1/{name}", query: ["view"] },
  CreateDocument: { verb: "POST", path: "/v1/{parent}/documents", body: "*" },
  UpdateDocumentVisibility: { verb: "POST", path: "/v1/{name}:updateVisibility", body: "*" },
  GetHealthProfile: { verb: "GET", path: "/v1/{name}" },
  UpdateHealthProfile: {
    verb: "PATCH", path: "/v1/{healthProfile.name}", body: "healthProfile",
    query: ["updateMask", "requestId", "etag", "removeItemIds"],
  },
  GetAdvanceDirectives: { verb: "GET", path: "/v1/{name}" },
  UpdateAdvanceDirectives: {
    verb: "PATCH", path: "/v1/{advanceDirectives.name}", body: "advanceDirectives",
    query: ["updateMask", "requestId", "etag"],
  },
  ListVaccinations: { verb: "GET", path: "/v1/{parent}/vaccinations", query: PAGING },
  CreateVaccination: { verb: "POST", path: "/v1/{parent}/vaccinations", body: "*" },
  // consent
  ListAccessRules: { verb: "GET", path: "/v1/{parent}/accessRules", query: [...PAGING, "showInactive"] },
  GrantAccess: { verb: "POST", path: "/v1/{parent}/accessRules:grant", body: "*" },
  RevokeAccess: { verb: "POST", path: "/v1/{name}:revoke", body: "*" },
  BlockProfessional: { verb: "POST", path: "/v1/{parent}/accessRules:block", body: "*" },
  UnblockProfessional: { verb: "POST", path: "/v1/{name}:unblock", body: "*" },
  SetEmergencyPreferences: { verb: "POST", path: "/v1/{name}:setEmergencyPreferences", body: "*" },
  ListAccessHistory: { verb: "GET", path: "/v1/{parent}/accessLog", query: PAGING },
  VerifyAccessLog: { verb: "GET", path: "/v1/{parent}/accessLog:verify" },
  // history
  GetCareHistory: { verb: "GET", path: "/v1/{name}", query: PAGING },
  // notify
  GetContactPreferences: { verb: "GET", path: "/v1/{name}" },
  SetContactPreferences: {
    verb: "PATCH", path: "/v1/{contactPreferences.name}", body: "contactPreferences",
    query: ["requestId"],
  },
};
