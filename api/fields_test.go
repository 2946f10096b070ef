package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"kho"
)

// Every malformed body of the API (wrong type, missing field, bad date,
// unknown field, a field twice) is answered 400 with an "errors" member
// naming each field that is wrong, as a JSON pointer, and what it takes.
func TestMalformedBodiesNameTheField(t *testing.T) {
	d := newDocServer(t, 0)
	doc := d.deposit(t, justice, textMeta, []byte("a result"))
	h := string(doc.Subject)
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	terms := `"procedure":"CHC","purpose":"Cấp hộ chiếu / passport","document_types":["GKS"],"mode":"once","data_life_days":1`
	type row struct {
		name    string
		p       kho.Principal
		path    string
		body    string
		pointer string
	}
	rows := []row{
		{"resolve/wrong type", police, "/v1/subjects/resolve", `{"subject_id":1090000001}`, "/subject_id"},
		{"resolve/missing", police, "/v1/subjects/resolve", `{}`, "/subject_id"},
		{"resolve/unknown field", police, "/v1/subjects/resolve", `{"subject_id":"001090000001","id":"x"}`, "/id"},
		{"resolve/malformed number", police, "/v1/subjects/resolve", `{"subject_id":"12345"}`, "/subject_id"},
		{"availability/missing procedure", police, "/v1/availability", `{"subject_id":"001090000001"}`, "/procedure"},
		{"availability/unknown procedure", police, "/v1/availability", `{"subject_id":"001090000001","procedure":"NOPE"}`, "/procedure"},
		{"consent request/bad date", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + terms + `,"valid_until":"01/12/2026"}`, "/valid_until"},
		{"consent request/missing date", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + terms + `}`, "/valid_until"},
		{"consent request/wrong type", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + strings.Replace(terms, `"data_life_days":1`, `"data_life_days":"thirty"`, 1) + `,"valid_until":"` + future + `"}`, "/data_life_days"},
		{"consent request/types not an array", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + strings.Replace(terms, `["GKS"]`, `"GKS"`, 1) + `,"valid_until":"` + future + `"}`, "/document_types"},
		{"consent request/bad mode", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + strings.Replace(terms, `"once"`, `"twice"`, 1) + `,"valid_until":"` + future + `"}`, "/mode"},
		{"consent request/short purpose", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + strings.Replace(terms, `"Cấp hộ chiếu / passport"`, `"x"`, 1) + `,"valid_until":"` + future + `"}`, "/purpose"},
		{"consent request/unknown field", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + terms + `,"valid_until":"` + future + `","urgent":true}`, "/urgent"},
		{"grant/unknown grantee", citizen, "/v1/me/consents", `{"grantee":"X",` + terms + `,"valid_until":"` + future + `"}`, "/grantee"},
		{"grant/on_behalf_of wrong type", citizen, "/v1/me/consents", `{"grantee":"000.00.15.H29",` + terms + `,"valid_until":"` + future + `","on_behalf_of":7}`, "/on_behalf_of"},
		{"hold/bad date", police, "/v1/subjects/" + h + "/legal-holds", `{"legal_basis":"QĐ 1/QĐ","until":"next year"}`, "/until"},
		{"hold/missing basis", police, "/v1/subjects/" + h + "/legal-holds", `{"until":"` + future + `"}`, "/legal_basis"},
		{"hold/field twice", police, "/v1/subjects/" + h + "/legal-holds", `{"legal_basis":"QĐ 1/QĐ","legal_basis":"QĐ 2/QĐ","until":"` + future + `"}`, "/legal_basis"},
		{"revocation/missing reason", justice, "/v1/documents/" + string(doc.ID) + "/revocation", `{}`, "/reason"},
		{"revocation/wrong type", justice, "/v1/documents/" + string(doc.ID) + "/revocation", `{"reason":["a","b"]}`, "/reason"},
		{"approval/on_behalf_of wrong type", citizen, "/v1/consent-requests/" + string(kho.NewDocumentID()) + "/approval", `{"on_behalf_of":true}`, "/on_behalf_of"},
		{"not an object", police, "/v1/subjects/resolve", `["001090000001"]`, ""},
		{"trailing bracket", police, "/v1/subjects/resolve", `{"subject_id":"001090000001"}}`, ""},
		{"invalid UTF-8", police, "/v1/subjects/resolve", "{\"subject_id\":\"00109\xff0000001\"}", ""},
		{"NUL in a field", police, "/v1/availability", `{"subject_id":"001090000001","procedure":"CHC\u0000x"}`, "/procedure"},
		{"nested field twice", police, "/v1/consent-requests", `{"subject_id":"001090000001",` + terms + `,"valid_until":"` + future + `","document_types":[{"x":1,"x":2}]}`, "/document_types"},
		{"date too far", police, "/v1/subjects/" + h + "/legal-holds", `{"legal_basis":"QĐ 1/QĐ","until":"9999-12-31"}`, "/until"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			resp, b := d.call(t, r.p, "POST", r.path, "application/json", strings.NewReader(r.body), nil)
			assertNamesField(t, resp.StatusCode, b, r.pointer)
		})
	}
	// The deposit's metadata part, likewise.
	meta := []row{
		{name: "deposit/bad date", body: strings.Replace(textMeta, "2024-01-15", "15/01/2024", 1), pointer: "/issued_on"},
		{name: "deposit/missing name", body: strings.Replace(textMeta, `"name":"Giấy khai sinh",`, "", 1), pointer: "/name"},
		{name: "deposit/unknown field", body: strings.Replace(textMeta, `"type"`, `"kind":"x","type"`, 1), pointer: "/kind"},
		{name: "deposit/wrong type", body: strings.Replace(textMeta, `"type":"GKS"`, `"type":7`, 1), pointer: "/type"},
		{name: "deposit/bad media type", body: strings.Replace(textMeta, "text/plain", "text/html", 1), pointer: "/media_type"},
	}
	for _, r := range meta {
		t.Run(r.name, func(t *testing.T) {
			ct, body := multipartBody(t, r.body, []byte("x"))
			resp, b := d.call(t, justice, "POST", "/v1/documents", ct, body, nil)
			assertNamesField(t, resp.StatusCode, b, r.pointer)
		})
	}
	// A query that is not plain text is a 400 naming it, never a 503.
	for _, q := range []string{"/v1/documents/" + string(doc.ID) + "/content?procedure=%ff", "/v1/subjects/" + h + "/documents?type=%00"} {
		resp, b := d.call(t, police, "GET", q, "", nil, nil)
		if resp.StatusCode != 400 || !strings.Contains(string(b), `"errors"`) {
			t.Errorf("%s: %d %s", q, resp.StatusCode, b)
		}
	}
	// Where a day is meant, a date is enough: until the end of that day.
	resp, b := d.call(t, police, "POST", "/v1/consent-requests", "application/json",
		strings.NewReader(`{"subject_id":"001090000001",`+terms+`,"valid_until":"`+time.Now().AddDate(0, 1, 0).Format(time.DateOnly)+`"}`), nil)
	if resp.StatusCode != 201 {
		t.Fatalf("a date as valid_until: %d %s", resp.StatusCode, b)
	}
}

func assertNamesField(t *testing.T, status int, b []byte, pointer string) {
	t.Helper()
	var p struct {
		Errors []kho.FieldError `json:"errors"`
	}
	if status != 400 || json.Unmarshal(b, &p) != nil {
		t.Fatalf("status %d: %s", status, b)
	}
	for _, e := range p.Errors {
		if e.Pointer == pointer && e.Detail != "" {
			return
		}
	}
	t.Fatalf("no error names %q: %s", pointer, b)
}
