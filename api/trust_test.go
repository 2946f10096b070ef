package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"kho"
)

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var (
	guardian = citizen // 001090000001 is the demo minor's guardian
	ward     = kho.Principal{Kind: kho.PrincipalCitizen, Person: "001215000004"}
)

// A minor (here 11) cannot consent alone, and neither can the guardian:
// each approval of the request is kept until both are there, and only then
// does the consent exist.
func TestWardConsentNeedsGuardianAndChild(t *testing.T) {
	d := newDocServer(t, 0)
	until := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	terms := `"procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"valid_until":"` + until + `","mode":"once","data_life_days":30`
	post := func(p kho.Principal, path, body string) (int, map[string]any) {
		resp, b := d.call(t, p, "POST", path, "application/json", strings.NewReader(body), nil)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	consents := func(p kho.Principal, q string) int {
		resp, b := d.call(t, p, "GET", "/v1/me/consents"+q, "", nil, nil)
		var out struct{ Consents []any }
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil {
			t.Fatalf("list consents: %d %s", resp.StatusCode, b)
		}
		return len(out.Consents)
	}

	// Granting directly: the minor alone, and the guardian alone for a
	// child of 7 or more, are refused with a reason that says what to do.
	if st, out := post(ward, "/v1/me/consents", `{"grantee":"000.00.15.H29",`+terms+`}`); st != 403 || out["reason"] != "guardian_required" {
		t.Fatalf("minor grants alone: %d %v", st, out)
	}
	if st, out := post(guardian, "/v1/me/consents", `{"grantee":"000.00.15.H29","on_behalf_of":"001215000004",`+terms+`}`); st != 403 || out["reason"] != "child_consent_required" {
		t.Fatalf("guardian grants alone for an 11-year-old: %d %v", st, out)
	}

	// The agency asks; the minor approves first: recorded, nothing active.
	st, req := post(police, "/v1/consent-requests", `{"subject_id":"001215000004",`+terms+`}`)
	if st != 201 {
		t.Fatalf("request: %d %v", st, req)
	}
	id := req["id"].(string)
	if st, out := post(ward, "/v1/consent-requests/"+id+"/approval", `{}`); st != 202 || out["status"] != "pending" {
		t.Fatalf("minor approves alone: %d %v", st, out)
	}
	if n := consents(ward, ""); n != 0 {
		t.Fatalf("a consent exists after the minor alone approved: %d", n)
	}
	// Approving again changes nothing: the same answer, no second record
	// of it or notice to the owner.
	partly := func() (n int) {
		if err := d.docs.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = 'consent.request_approved_in_part'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := partly()
	if st, out := post(ward, "/v1/consent-requests/"+id+"/approval", `{}`); st != 202 || out["status"] != "pending" || fmt.Sprint(out["awaiting"]) != "[guardian]" {
		t.Fatalf("minor approves again: %d %v", st, out)
	}
	if after := partly(); after != before {
		t.Fatalf("approving again recorded %d more partial approvals", after-before)
	}
	// A stranger naming the ward cannot approve for them.
	if st, _ := post(stranger, "/v1/consent-requests/"+id+"/approval", `{"on_behalf_of":"001215000004"}`); st != 404 {
		t.Fatalf("stranger approves for the ward: %d", st)
	}
	// The guardian approves: now the consent exists, granted by both.
	st, c := post(guardian, "/v1/consent-requests/"+id+"/approval", `{"on_behalf_of":"001215000004"}`)
	if st != 201 || c["granted_by"] != "guardian+self" || c["status"] != "active" {
		t.Fatalf("guardian approves: %d %v", st, c)
	}
	if consents(guardian, "?on_behalf_of=001215000004") != 1 || consents(ward, "") != 1 {
		t.Fatal("the ward's consent is not listed for both")
	}
	// Either may withdraw it; neither may make it active again alone.
	cid := c["id"].(string)
	if st, out := post(guardian, "/v1/consents/"+cid+"/pause", `{}`); st != 200 {
		t.Fatalf("guardian pauses: %d %v", st, out)
	}
	if st, out := post(ward, "/v1/consents/"+cid+"/resume", `{}`); st != 403 || out["reason"] != "guardian_required" {
		t.Fatalf("the minor resumes alone: %d %v", st, out)
	}
	if st, out := post(guardian, "/v1/consents/"+cid+"/resume", `{}`); st != 403 || out["reason"] != "child_consent_required" {
		t.Fatalf("the guardian resumes alone: %d %v", st, out)
	}
	if st, out := post(ward, "/v1/consents/"+cid+"/revocation", `{}`); st != 200 {
		t.Fatalf("the minor revokes: %d %v", st, out)
	}
	// A minor does not erase their store alone.
	resp, b := d.call(t, ward, "POST", "/v1/subjects/resolve", "application/json", strings.NewReader(`{"subject_id":"001215000004"}`), nil)
	var h struct{ Handle string }
	if resp.StatusCode != 200 || json.Unmarshal(b, &h) != nil {
		t.Fatalf("resolve: %d %s", resp.StatusCode, b)
	}
	if resp, b := d.call(t, ward, "POST", "/v1/subjects/"+h.Handle+"/erasure", "", nil, nil); resp.StatusCode != 403 {
		t.Fatalf("the minor erases alone: %d %s", resp.StatusCode, b)
	}
	// Every refusal above is on the ward's record.
	var refusals int
	if err := d.docs.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND outcome = 'denied'`, h.Handle).Scan(&refusals); err != nil || refusals < 6 {
		t.Fatalf("refusals on the ward's record: %d %v", refusals, err)
	}
	// The guardian's answer is on the ward's record, with the capacity.
	var actingFor string
	if err := d.docs.DB.Pool.QueryRow(t.Context(), `SELECT acting_for FROM audit_events WHERE action = 'consent.granted' AND outcome = 'success' ORDER BY seq DESC LIMIT 1`).
		Scan(&actingFor); err != nil || actingFor != "guardian" {
		t.Fatalf("acting_for %q %v", actingFor, err)
	}
}

// The attacks of the trust issue, over HTTP.
func TestTrustAttacksOverHTTP(t *testing.T) {
	d := newDocServer(t, 0)
	// A justice office planting a passport.
	passport := strings.Replace(textMeta, `"type":"GKS"`, `"type":"HC"`, 1)
	ct, body := multipartBody(t, passport, []byte("a forged passport"))
	resp, b := d.call(t, justice, "POST", "/v1/documents", ct, body, nil)
	if resp.StatusCode != 403 || !bytes.Contains(b, []byte(`"reason":"not_issuer"`)) {
		t.Fatalf("justice office deposits a passport: %d %s", resp.StatusCode, b)
	}
	// A token claiming a business its bearer does not represent.
	claimant := kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "031200000003", Business: "0101234567"}
	for _, path := range []string{"/v1/me/documents", "/v1/me/access-log", "/v1/me/consents", "/v1/me/legal-holds"} {
		if resp, b := d.call(t, claimant, "GET", path, "", nil, nil); resp.StatusCode != 404 {
			t.Errorf("%s for a business not represented: %d %s", path, resp.StatusCode, b)
		}
	}
	// on_behalf_of where a route does not take it is refused, not ignored.
	for _, path := range []string{"/v1/me?on_behalf_of=001215000004", "/v1/subjects/resolve?on_behalf_of=001215000004"} {
		method, body := "GET", ""
		if strings.Contains(path, "resolve") {
			method, body = "POST", `{"subject_id":"001090000001"}`
		}
		if resp, b := d.call(t, guardian, method, path, "application/json", strings.NewReader(body), nil); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	// Nor is it lost by giving it twice, empty, or in a query Go would cut.
	for _, path := range []string{"/v1/me/documents?on_behalf_of=&on_behalf_of=001215000004", "/v1/me/documents?on_behalf_of=",
		"/v1/me/documents?on_behalf_of;=001215000004"} {
		if resp, b := d.call(t, guardian, "GET", path, "", nil, nil); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	dup := `{"grantee":"000.00.15.H29","procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],
		"valid_until":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `","mode":"once","data_life_days":1,"on_behalf_of":"001215000004","on_behalf_of":""}`
	if resp, b := d.call(t, guardian, "POST", "/v1/me/consents", "application/json", strings.NewReader(dup), nil); resp.StatusCode != 400 || !bytes.Contains(b, []byte("twice")) {
		t.Errorf("on_behalf_of twice in a body: %d %s", resp.StatusCode, b)
	}
	// A consent request names types; documents are the subject's choice.
	until := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	resp, b = d.call(t, police, "POST", "/v1/consent-requests", "application/json", strings.NewReader(`{"subject_id":"001090000001","procedure":"CHC",
		"purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"document_ids":["01a20484-198b-7000-8000-000000000000"],"valid_until":"`+until+`","mode":"once","data_life_days":1}`), nil)
	if resp.StatusCode != 400 {
		t.Fatalf("a request naming documents: %d %s", resp.StatusCode, b)
	}
	// An agency that does not handle the procedure is refused, and the
	// refusal is on the subject's record.
	resp, _ = d.call(t, justice, "POST", "/v1/availability", "application/json", strings.NewReader(`{"subject_id":"001090000001","procedure":"CHC"}`), nil)
	var n int
	if err := d.docs.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events a JOIN subjects s ON s.handle = a.subject_handle
		WHERE s.id = '001090000001' AND a.action = 'availability.checked' AND a.outcome = 'denied' AND a.reason = 'not_handler'`).Scan(&n); err != nil || resp.StatusCode != 403 || n != 1 {
		t.Fatalf("refused availability: %d, recorded %d %v", resp.StatusCode, n, err)
	}
	// Free text an agency writes for the citizen to read is plain text.
	for _, purpose := range []string{"Cấp hộ chiếu ‮taht ecnerefer‬ ok", "Cấp hộ chiếu [31m đỏ", "Cấp hộ chiếu​ ẩn", "Cấp hộ  chiếu"} {
		body := `{"subject_id":"001090000001","procedure":"CHC","purpose":` + strconvQuote(purpose) + `,"document_types":["GKS"],"valid_until":"` + until + `","mode":"once","data_life_days":1}`
		if resp, b := d.call(t, police, "POST", "/v1/consent-requests", "application/json", strings.NewReader(body), nil); resp.StatusCode != 400 {
			t.Errorf("purpose %q: %d %s", purpose, resp.StatusCode, b)
		}
	}
	// A body where a route takes none is refused, not ignored.
	if resp, b := d.call(t, citizen, "POST", "/v1/subjects/00000000-0000-0000-0000-000000000000/erasure", "application/json", strings.NewReader(`{"on_behalf_of":"001215000004"}`), nil); resp.StatusCode != 400 {
		t.Errorf("erasure with a body: %d %s", resp.StatusCode, b)
	}
	// Bad dates and media that are not what they claim.
	for name, meta := range map[string]string{
		"issued in the future":      strings.Replace(textMeta, "2024-01-15", "9999-12-31", 1),
		"valid until before issued": strings.Replace(textMeta, `"media_type"`, `"valid_until":"2020-01-01","media_type"`, 1),
		"json that is not":          strings.Replace(textMeta, "text/plain", "application/json", 1),
		"a name on two lines":       strings.Replace(textMeta, `"Giấy khai sinh"`, `"Giấy khai\nsinh"`, 1),
		"a zero-width name":         strings.Replace(textMeta, `"Giấy khai sinh"`, `"Giấy khai\u200bsinh"`, 1),
	} {
		ct, body := multipartBody(t, meta, []byte("{not json"))
		if resp, b := d.call(t, justice, "POST", "/v1/documents", ct, body, nil); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
}
