package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"kho"
	"kho/internal/testenv"
)

// The authorization matrix: every registered route, called by every kind of
// principal (citizen; guardian with and without a current guardianship;
// business representative with and without a current representation;
// agency with and without issuing authority, unregistered, its officer, an
// agency handling the procedure; security officer; operator; anonymous), on
// a resource of its own, someone else's, and one that does not exist.
//
// Each cell's status is asserted. Beyond that, for every principal not
// entitled to other people's resources, "someone else's" and "does not
// exist" must get the same status and the same problem (code, reason,
// detail): nothing tells them apart. The test fails when a route is
// registered that the matrix does not list.

// target names the resources a call is about.
type target struct {
	subject  kho.SubjectID
	handle   kho.SubjectHandle
	doc      kho.DocumentID
	consent  string
	request  string // answered by approval
	request2 string // answered by denial
	hold     string
}

// who is one principal of the matrix.
type who struct {
	name     string
	p        *kho.Principal // nil: anonymous
	onBehalf bool           // selects its "own" store with on_behalf_of (a guardian)
	own      *target        // nil: it has nothing of its own here
	foreign  target
}

// call is one request of a row, for a who and a target.
type call struct {
	method, path, ctype, body string
}

// row is one route of the matrix.
type row struct {
	route string
	req   func(tg target, w who, own bool) call
	// role: whos refused by their role whatever the target, with the
	// status (the same on own, foreign and missing resources).
	role map[string]int
	// own: the status on the who's own resource, for those entitled.
	own map[string]int
	// open: whos entitled to resources that are not theirs (an agency may
	// hold any store, deposit into any, resolve any): the statuses on a
	// foreign and a missing resource, which may differ.
	open map[string][2]int
	// deny: the status everyone else gets on foreign and missing resources
	// (404 unless set).
	deny int
}

// statuses for rows that allow any of several (state may vary by order).
const anyOf2xxOr409 = -1

func TestAuthorizationMatrix(t *testing.T) {
	d := newDocServer(t, 0)

	// The cast. Demo data: 001090000001 is the guardian of the minor
	// 001215000004 and the legal representative of 0101234567.
	var (
		citizenA = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001"}
		minor    = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001215000004"}
		victim   = kho.Principal{Kind: kho.PrincipalCitizen, Person: "031200000003"}
		lapsedG  = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001085000006"}
		bizRep   = kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "001090000001", Business: "0101234567"}
		bizGone  = kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "031200000003", Business: "0101234567"}
		finance  = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.12.H10"}
		unknownA = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.99.99.X99"}
		officer  = kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "000.06.16.G09", Staff: "cb01"}
		security = kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}
		operator = kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01"}
	)
	// A guardianship that ended yesterday, and a representation that did.
	mustExec(t, d, `INSERT INTO subjects (id, kind, handle) VALUES ('001085000006', 'citizen', gen_random_uuid())`)
	mustExec(t, d, `INSERT INTO guardianships (guardian_handle, ward_handle, basis, valid_from, valid_until)
		SELECT g.handle, w.handle, 'ended', current_date - 30, current_date - 1 FROM subjects g, subjects w WHERE g.id = '001085000006' AND w.id = '001215000004'`)
	mustExec(t, d, `INSERT INTO business_representatives (business_handle, person_handle, role, valid_from, valid_until)
		SELECT b.handle, p.handle, 'authorised', now() - interval '30 days', now() - interval '1 day' FROM subjects b, subjects p WHERE b.id = '0101234567' AND p.id = '031200000003'`)

	// Resources of each store.
	meta := func(subject, typ string) string {
		return fmt.Sprintf(`{"subject_id":%q,"type":%q,"name":"văn bản / document","issued_on":"2024-01-15","media_type":"text/plain"}`, subject, typ)
	}
	docA := d.deposit(t, justice, meta("001090000001", "GKS"), []byte("A's birth certificate"))
	docM := d.deposit(t, justice, meta("001215000004", "GKS"), []byte("M's birth certificate"))
	docB := d.deposit(t, finance, meta("0101234567", "GCNDKDN"), []byte("B's registration"))
	docV := d.deposit(t, police, meta("031200000003", "CCCD"), []byte("V's identity card"))

	until := time.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339)
	post := func(p kho.Principal, path, body string, want int) map[string]any {
		t.Helper()
		resp, b := d.call(t, p, "POST", path, "application/json", strings.NewReader(body), nil)
		if resp.StatusCode != want {
			t.Fatalf("setup %s: %d %s", path, resp.StatusCode, b)
		}
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}
	grant := func(p kho.Principal, onBehalf, grantee, proc, typ string) string {
		body := fmt.Sprintf(`{"grantee":%q,"procedure":%q,"purpose":"thủ tục / a procedure to test","document_types":[%q],"valid_until":%q,"mode":"standing","max_uses":1000,"data_life_days":30%s}`,
			grantee, proc, typ, until, onBehalf)
		return post(p, "/v1/me/consents", body, 201)["id"].(string)
	}
	ask := func(p kho.Principal, subject, proc, typ string) string {
		body := fmt.Sprintf(`{"subject_id":%q,"procedure":%q,"purpose":"thủ tục / a procedure to test","document_types":[%q],"valid_until":%q,"mode":"standing","max_uses":1000,"data_life_days":30}`,
			subject, proc, typ, until)
		return post(p, "/v1/consent-requests", body, 201)["id"].(string)
	}
	hold := func(p kho.Principal, h kho.SubjectHandle) string {
		return post(p, "/v1/subjects/"+string(h)+"/legal-holds", `{"legal_basis":"Quyết định 1/QĐ (mẫu)","until":"`+until+`"}`, 201)["id"].(string)
	}
	cA := grant(citizenA, "", "000.00.15.H29", "CHC", "GKS")
	cB := grant(bizRep, "", "000.00.12.H10", "DKTDDN", "GCNDKDN")
	cV := grant(victim, "", "000.00.12.H10", "DKDN", "CCCD")
	// The ward's consent needs the guardian and the child (11 years old).
	rM0 := ask(police, "001215000004", "CHC", "GKS")
	if a := post(citizenA, "/v1/consent-requests/"+rM0+"/approval", `{"on_behalf_of":"001215000004"}`, 202); a["status"] != "pending" {
		t.Fatalf("guardian's approval alone: %v", a)
	}
	cM := post(minor, "/v1/consent-requests/"+rM0+"/approval", `{}`, 201)["id"].(string)

	tA := target{subject: "001090000001", handle: docA.Subject, doc: docA.ID, consent: cA,
		request: ask(police, "001090000001", "CHC", "GKS"), request2: ask(police, "001090000001", "CHC", "GKS"), hold: hold(police, docA.Subject)}
	tM := target{subject: "001215000004", handle: docM.Subject, doc: docM.ID, consent: cM,
		request: ask(police, "001215000004", "CHC", "GKS"), request2: ask(police, "001215000004", "CHC", "GKS"), hold: hold(police, docM.Subject)}
	tB := target{subject: "0101234567", handle: docB.Subject, doc: docB.ID, consent: cB,
		request: ask(finance, "0101234567", "DKTDDN", "GCNDKDN"), request2: ask(finance, "0101234567", "DKTDDN", "GCNDKDN"), hold: hold(finance, docB.Subject)}
	tV := target{subject: "031200000003", handle: docV.Subject, doc: docV.ID, consent: cV,
		request: ask(finance, "031200000003", "DKDN", "CCCD"), request2: ask(finance, "031200000003", "DKDN", "CCCD"), hold: hold(finance, docV.Subject)}
	tPolice := tA
	tPolice.hold = ""
	none := target{subject: "001099000099", handle: kho.SubjectHandle(uuid.NewString()), doc: kho.NewDocumentID(), consent: uuid.NewString(),
		request: uuid.NewString(), request2: uuid.NewString(), hold: uuid.NewString()}
	if _, err := d.docs.Log.MakeCheckpoint(testenv.Context(t)); err != nil {
		t.Fatal(err)
	}

	ptr := func(p kho.Principal) *kho.Principal { return &p }
	whos := []who{
		{name: "citizen", p: &citizenA, own: &tA, foreign: tV},
		{name: "guardian", p: &citizenA, onBehalf: true, own: &tM, foreign: tV},
		{name: "guardian-lapsed", p: &lapsedG, onBehalf: true, own: &tM, foreign: tV},
		{name: "business-rep", p: &bizRep, own: &tB, foreign: tV},
		{name: "business-rep-lapsed", p: &bizGone, own: &tB, foreign: tV},
		{name: "agency-issuer", p: ptr(justice), own: &tA, foreign: tV},
		{name: "agency-not-issuer", p: &finance, own: &tB, foreign: tA},
		{name: "agency-reuser", p: ptr(police), own: &tPolice, foreign: tB},
		{name: "agency-unregistered", p: &unknownA, foreign: tA},
		{name: "officer", p: &officer, own: &tA, foreign: tV},
		{name: "security", p: &security, foreign: tA},
		{name: "operator", p: &operator, foreign: tA},
		{name: "anonymous", foreign: tA},
	}
	agencies := []string{"agency-issuer", "agency-not-issuer", "agency-reuser", "agency-unregistered", "officer"}
	staff := []string{"security", "operator"}
	subjects := []string{"citizen", "guardian", "guardian-lapsed", "business-rep", "business-rep-lapsed"}
	all := func(names []string, status int) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			m[n] = status
		}
		return m
	}
	merge := func(ms ...map[string]int) map[string]int {
		out := map[string]int{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	// onBehalfQ is the ?on_behalf_of= a /me route gets: none for one's own
	// store, the target's subject otherwise (a ward, someone else's, or a
	// missing one).
	onBehalfQ := func(tg target, w who, own bool) string {
		if own && !w.onBehalf {
			return ""
		}
		return "?on_behalf_of=" + string(tg.subject)
	}
	onBehalfBody := func(tg target, w who, own bool) string {
		if own && !w.onBehalf {
			return ""
		}
		return `,"on_behalf_of":"` + string(tg.subject) + `"`
	}
	get := func(path string) func(target, who, bool) call {
		return func(target, who, bool) call { return call{method: "GET", path: path} }
	}
	docGet := func(suffix string) func(target, who, bool) call {
		return func(tg target, _ who, _ bool) call {
			return call{method: "GET", path: "/v1/documents/" + string(tg.doc) + suffix}
		}
	}
	ownDoc := merge(all([]string{"citizen", "guardian", "business-rep", "agency-issuer", "agency-not-issuer", "officer"}, 200))
	upload := func(metaJSON string) (string, string) {
		ct, b := multipartBody(t, metaJSON, []byte("nội dung / content"))
		return ct, b.String()
	}
	meRow := func(route, path string) row {
		return row{route: route, req: func(tg target, w who, own bool) call { return call{method: "GET", path: path + onBehalfQ(tg, w, own)} },
			role: merge(all(agencies, 403), all(staff, 403)),
			own:  all([]string{"citizen", "guardian", "business-rep"}, 200)}
	}
	consentAction := func(route, suffix string) row {
		return row{route: route, req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/consents/" + tg.consent + suffix}
		}, role: merge(all(agencies, 403), all(staff, 403)), own: all([]string{"citizen", "guardian", "business-rep"}, 200)}
	}
	answer := func(route, suffix string, second bool, own map[string]int) row {
		return row{route: route, req: func(tg target, w who, own bool) call {
			id := tg.request
			if second {
				id = tg.request2
			}
			body := "{}"
			if w.onBehalf {
				body = `{"on_behalf_of":"` + string(tg.subject) + `"}`
			}
			return call{method: "POST", path: "/v1/consent-requests/" + id + suffix, ctype: "application/json", body: body}
		}, role: merge(all(agencies, 403), all(staff, 403)), own: own}
	}
	terms := func(tg target, w who, own bool) string {
		return fmt.Sprintf(`{"subject_id":%q,"procedure":"CHC","purpose":"thủ tục / a procedure to test","document_types":["GKS"],"valid_until":%q,"mode":"once","data_life_days":30}`, tg.subject, until)
	}

	rows := []row{
		{route: "GET /healthz", req: get("/healthz"), role: all(namesOf(whos), 200)},
		{route: "GET /readyz", req: get("/readyz"), role: all(namesOf(whos), 200)},
		{route: "GET /.well-known/jwks.json", req: get("/.well-known/jwks.json"), role: all(namesOf(whos), 200)},
		{route: "GET /audit/checkpoint", req: get("/audit/checkpoint"), role: all(namesOf(whos), 200)},
		{route: "GET /audit/key", req: get("/audit/key"), role: all(namesOf(whos), 200)},
		{route: "GET /pki/:file", req: get("/pki/ca.crl"), role: all(namesOf(whos), 200)},
		{route: "GET /openapi.json", req: get("/openapi.json"), role: all(namesOf(whos), 200)},
		{route: "GET /dev/idp/jwks.json", req: get("/dev/idp/jwks.json"), role: all(namesOf(whos), 200)},
		{route: "GET /issuers/:code/jwks.json", req: get("/issuers/000.06.16.G09/jwks.json"), role: all(namesOf(whos), 200)},
		{route: "POST /oauth/token", req: func(target, who, bool) call {
			return call{method: "POST", path: "/oauth/token", ctype: "application/x-www-form-urlencoded", body: "grant_type=client_credentials"}
		}, role: all(namesOf(whos), 401)},
		{route: "GET /audit/consistency", req: get("/audit/consistency?from=1&to=1"), role: all(namesOf(whos), 200)},
		{route: "GET /v1/me", req: get("/v1/me"), role: all(namesOf(whos), 200)},
		{route: "GET /v1/documents/:id", req: docGet(""), own: ownDoc},
		{route: "GET /v1/documents/:id/content", req: docGet("/content"), own: ownDoc},
		{route: "GET /v1/documents/:id/content?procedure", req: docGet("/content?procedure=CHC"),
			own: merge(ownDoc, map[string]int{"agency-reuser": 200})},
		{route: "GET /v1/documents/:id/verification", req: docGet("/verification"), own: ownDoc},
		{route: "POST /v1/documents/:id/versions", req: func(tg target, _ who, _ bool) call {
			// A new version of another type: refused after authorization
			// (400), so nothing changes.
			ct, b := upload(strings.Replace(meta("", "XNCT"), `"subject_id":"",`, "", 1))
			return call{method: "POST", path: "/v1/documents/" + string(tg.doc) + "/versions", ctype: ct, body: b}
		}, own: merge(all([]string{"citizen", "guardian", "business-rep"}, 403), all([]string{"agency-issuer", "agency-not-issuer", "officer"}, 400))},
		{route: "POST /v1/documents/:id/revocation", req: func(tg target, _ who, _ bool) call {
			// A reason too short: refused after authorization (400).
			return call{method: "POST", path: "/v1/documents/" + string(tg.doc) + "/revocation", ctype: "application/json", body: `{"reason":"x"}`}
		}, own: merge(all([]string{"citizen", "guardian", "business-rep"}, 403), all([]string{"agency-issuer", "agency-not-issuer", "officer"}, 400))},
		// Before any agency deposits into stores not its own.
		{route: "GET /v1/subjects/:handle/documents", req: func(tg target, _ who, _ bool) call {
			return call{method: "GET", path: "/v1/subjects/" + string(tg.handle) + "/documents"}
		}, role: merge(all(staff, 403), map[string]int{"agency-unregistered": 403}),
			own: map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200, "agency-issuer": 200, "agency-not-issuer": 200, "agency-reuser": 200, "officer": 200},
			// An agency sees what it issued there: for a store it never
			// wrote to, the same empty page as for a store that does not exist.
			deny: 404},
		{route: "POST /v1/documents", req: func(tg target, _ who, _ bool) call {
			ct, b := upload(meta(string(tg.subject), "GKS"))
			return call{method: "POST", path: "/v1/documents", ctype: ct, body: b}
		}, role: merge(all(staff, 403), all([]string{"agency-not-issuer", "agency-unregistered", "agency-reuser"}, 403)),
			own:  map[string]int{"citizen": 201, "guardian": 201, "business-rep": 400, "agency-issuer": 201, "officer": 201},
			open: map[string][2]int{"agency-issuer": {201, 201}, "officer": {201, 201}}},
		{route: "POST /v1/subjects/resolve", req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/subjects/resolve", ctype: "application/json", body: `{"subject_id":"` + string(tg.subject) + `"}`}
		}, role: merge(all(staff, 403), map[string]int{"agency-unregistered": 403}),
			own:  map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200, "agency-issuer": 200, "agency-not-issuer": 200, "agency-reuser": 200, "officer": 200},
			open: map[string][2]int{"agency-issuer": {200, 200}, "agency-not-issuer": {200, 200}, "agency-reuser": {200, 200}, "officer": {200, 200}}},
		meRow("GET /v1/me/documents", "/v1/me/documents"),
		meRow("GET /v1/me/legal-holds", "/v1/me/legal-holds"),
		meRow("GET /v1/me/access-log", "/v1/me/access-log"),
		meRow("GET /v1/me/notifications", "/v1/me/notifications"),
		{route: "POST /v1/subjects/:handle/legal-holds", req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/subjects/" + string(tg.handle) + "/legal-holds", ctype: "application/json",
				body: `{"legal_basis":"Quyết định 2/QĐ (mẫu)","until":"` + until + `"}`}
		}, role: merge(all(subjects, 403), all(staff, 403), map[string]int{"agency-unregistered": 403}),
			own:  map[string]int{"agency-issuer": 201, "agency-not-issuer": 201, "agency-reuser": 201, "officer": 201},
			open: map[string][2]int{"agency-issuer": {201, 404}, "agency-not-issuer": {201, 404}, "agency-reuser": {201, 404}, "officer": {201, 404}}},
		{route: "POST /v1/subjects/:handle/legal-holds/:hold/release", req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/subjects/" + string(tg.handle) + "/legal-holds/" + tg.hold + "/release"}
		}, role: merge(all(subjects, 403), map[string]int{"security": 403, "operator": 400}),
			own: map[string]int{"agency-not-issuer": 200}},
		{route: "POST /v1/availability", req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/availability", ctype: "application/json", body: `{"subject_id":"` + string(tg.subject) + `","procedure":"CHC"}`}
		}, role: merge(all(subjects, 403), all(staff, 403), all([]string{"agency-issuer", "agency-not-issuer", "agency-unregistered", "officer"}, 403)),
			own:  map[string]int{"agency-reuser": 200},
			open: map[string][2]int{"agency-reuser": {200, 200}}},
		{route: "POST /v1/consent-requests", req: func(tg target, w who, own bool) call {
			return call{method: "POST", path: "/v1/consent-requests", ctype: "application/json", body: terms(tg, w, own)}
		}, role: merge(all(subjects, 403), all(staff, 403), all([]string{"agency-issuer", "agency-not-issuer", "agency-unregistered", "officer"}, 403)),
			own:  map[string]int{"agency-reuser": 201},
			open: map[string][2]int{"agency-reuser": {201, 201}}},
		{route: "GET /v1/consent-requests", req: func(tg target, w who, own bool) call {
			if w.p != nil && (w.p.Kind == kho.PrincipalAgency || w.p.Kind == kho.PrincipalAgencyOfficer) {
				return call{method: "GET", path: "/v1/consent-requests"} // an agency lists its own
			}
			return call{method: "GET", path: "/v1/consent-requests" + onBehalfQ(tg, w, own)}
		}, role: merge(all(agencies, 200), all(staff, 403)), own: all([]string{"citizen", "guardian", "business-rep"}, 200)},
		answer("POST /v1/consent-requests/:id/approval", "/approval", false, map[string]int{"citizen": 201, "guardian": 202, "business-rep": 201}),
		answer("POST /v1/consent-requests/:id/denial", "/denial", true, map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200}),
		{route: "POST /v1/me/consents", req: func(tg target, w who, own bool) call {
			body := fmt.Sprintf(`{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"thủ tục / a procedure to test","document_types":["GKS"],"valid_until":%q,"mode":"once","data_life_days":30%s}`,
				until, onBehalfBody(tg, w, own))
			return call{method: "POST", path: "/v1/me/consents", ctype: "application/json", body: body}
		}, role: merge(all(agencies, 403), all(staff, 403)),
			// The ward is 11: a guardian alone may not grant.
			own: map[string]int{"citizen": 201, "guardian": 403, "business-rep": 201}},
		meRowConsents(onBehalfQ, agencies, staff),
		{route: "GET /v1/consents/:id", req: func(tg target, _ who, _ bool) call { return call{method: "GET", path: "/v1/consents/" + tg.consent} },
			own: map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200, "agency-reuser": 200, "agency-not-issuer": 200}},
		{route: "GET /v1/consents/:id/receipt", req: func(tg target, _ who, _ bool) call {
			return call{method: "GET", path: "/v1/consents/" + tg.consent + "/receipt"}
		}, own: map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200, "agency-reuser": 200, "agency-not-issuer": 200}},
		{route: "GET /v1/use-receipts/:id", req: get("/v1/use-receipts/00000000-0000-4000-8000-000000000000"), role: all(namesOf(whos), 404)},
		{route: "POST /v1/use-receipts/:id/deletion", req: func(target, who, bool) call {
			return call{method: "POST", path: "/v1/use-receipts/00000000-0000-4000-8000-000000000000/deletion"}
		}, role: merge(all(subjects, 403), all(staff, 403), all(agencies, 404))},
		{route: "GET /v1/consents/:id/receipt.pdf", req: func(tg target, _ who, _ bool) call {
			return call{method: "GET", path: "/v1/consents/" + tg.consent + "/receipt.pdf"}
		}, own: map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200, "agency-reuser": 200, "agency-not-issuer": 200}},
		consentAction("POST /v1/consents/:id/pause", "/pause"),
		// Making a ward's consent active again needs both parties.
		withOwn(consentAction("POST /v1/consents/:id/resume", "/resume"), "guardian", 403),
		consentAction("POST /v1/consents/:id/revocation", "/revocation?preview=true"),
		{route: "POST /v1/pdf-signatures/verification", req: func(target, who, bool) call {
			return call{method: "POST", path: "/v1/pdf-signatures/verification", ctype: "application/pdf", body: "not a pdf"}
		}, role: all(namesOf(whos), 400)},
		{route: "GET /v1/audit/events", req: get("/v1/audit/events"), role: merge(all(namesOf(whos), 403), map[string]int{"security": 200})},
		{route: "GET /v1/audit/export", req: get("/v1/audit/export?action=none"), role: merge(all(namesOf(whos), 403), map[string]int{"security": 200})},
		{route: "GET /v1/audit/anomalies", req: get("/v1/audit/anomalies"), role: merge(all(namesOf(whos), 403), map[string]int{"security": 200})},
		{route: "GET /v1/audit/verification", req: get("/v1/audit/verification"), role: merge(all(namesOf(whos), 403), map[string]int{"security": 200})},
		// Last: erasure changes what is left.
		{route: "POST /v1/subjects/:handle/erasure", req: func(tg target, _ who, _ bool) call {
			return call{method: "POST", path: "/v1/subjects/" + string(tg.handle) + "/erasure"}
		}, role: merge(all(agencies, 403), map[string]int{"security": 403}),
			own:  map[string]int{"citizen": anyOf2xxOr409, "guardian": anyOf2xxOr409, "business-rep": anyOf2xxOr409},
			open: map[string][2]int{"operator": {anyOf2xxOr409, 404}}},
	}

	// Every registered route is in the matrix, and nothing else.
	listed := map[string]bool{}
	for _, r := range rows {
		route, _, _ := strings.Cut(r.route, "?")
		listed[route] = true
	}
	for _, r := range d.srv.Routes() {
		if !listed[r] {
			t.Errorf("route %s is registered but not in the authorization matrix", r)
		}
		delete(listed, r)
	}
	for r := range listed {
		t.Errorf("route %s is in the matrix but not registered", r)
	}

	unexpected := 0
	for _, r := range rows {
		for _, w := range whos {
			t.Run(r.route+"/"+w.name, func(t *testing.T) {
				public := !strings.Contains(r.route, " /v1/")
				do := func(tg target, own bool) (int, []byte) {
					cl := r.req(tg, w, own)
					var body io.Reader
					if cl.body != "" {
						body = strings.NewReader(cl.body)
					}
					tok := ""
					if w.p != nil {
						tok = d.token(t, *w.p)
					}
					resp, b := request(t, cl.method, d.url+cl.path, tok, cl.ctype, body, nil)
					if resp.StatusCode >= 500 {
						t.Fatalf("%s %s: %d %s", cl.method, cl.path, resp.StatusCode, b)
					}
					return resp.StatusCode, b
				}
				check := func(what string, got, want int, b []byte) {
					t.Helper()
					if want == anyOf2xxOr409 {
						if got/100 == 2 || got == 409 {
							return
						}
					} else if got == want {
						return
					}
					if got/100 == 2 {
						unexpected++
					}
					t.Errorf("%s: status %d, want %d: %s", what, got, want, b)
				}
				if w.p == nil && !public {
					for _, tg := range []target{w.foreign, none} {
						got, b := do(tg, false)
						check("anonymous", got, 401, b)
					}
					return
				}
				if st, ok := r.role[w.name]; ok {
					for i, tg := range []target{w.foreign, none} {
						got, b := do(tg, false)
						check([]string{"foreign", "missing"}[i], got, st, b)
					}
					if w.own != nil {
						got, b := do(*w.own, true)
						check("own", got, st, b)
					}
					return
				}
				deny := r.deny
				if deny == 0 {
					deny = 404
				}
				fs, fb := do(w.foreign, false)
				ns, nb := do(none, false)
				if o, ok := r.open[w.name]; ok {
					check("foreign", fs, o[0], fb)
					check("missing", ns, o[1], nb)
				} else {
					if w.p != nil && (w.p.Kind == kho.PrincipalAgency || w.p.Kind == kho.PrincipalAgencyOfficer) && r.route == "GET /v1/subjects/:handle/documents" {
						deny = 200 // the empty page, the same for both
					}
					check("foreign", fs, deny, fb)
					check("missing", ns, deny, nb)
					if !sameAnswer(fb, nb) {
						t.Errorf("someone else's and a missing resource are told apart:\n foreign: %s\n missing: %s", fb, nb)
					}
				}
				if w.own != nil {
					want, ok := r.own[w.name]
					if !ok {
						want = deny // a claim that is not a current delegation is nobody's
					}
					got, b := do(*w.own, true)
					check("own", got, want, b)
				}
			})
		}
	}
	if unexpected > 0 {
		t.Errorf("%d unexpected 2xx answers", unexpected)
	}
}

func withOwn(r row, who string, status int) row {
	r.own[who] = status
	return r
}

func meRowConsents(onBehalfQ func(target, who, bool) string, agencies, staff []string) row {
	m := map[string]int{}
	for _, n := range append(append([]string{}, agencies...), staff...) {
		m[n] = 403
	}
	return row{route: "GET /v1/me/consents", req: func(tg target, w who, own bool) call {
		return call{method: "GET", path: "/v1/me/consents" + onBehalfQ(tg, w, own)}
	}, role: m, own: map[string]int{"citizen": 200, "guardian": 200, "business-rep": 200}}
}

func namesOf(ws []who) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.name)
	}
	return out
}

// sameAnswer compares two answers without what differs by request (ids,
// times): the problem's code, reason and detail, or the whole body.
func sameAnswer(a, b []byte) bool {
	var pa, pb map[string]any
	if json.Unmarshal(a, &pa) != nil || json.Unmarshal(b, &pb) != nil {
		return bytes.Equal(a, b)
	}
	for _, m := range []map[string]any{pa, pb} {
		delete(m, "request_id")
		delete(m, "instance")
	}
	ka, _ := json.Marshal(pa)
	kb, _ := json.Marshal(pb)
	return bytes.Equal(ka, kb)
}

func mustExec(t *testing.T, d *docServer, sql string, args ...any) {
	t.Helper()
	if _, err := d.docs.DB.Pool.Exec(testenv.Context(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
