package policies_test

import (
	"strings"
	"testing"

	"kho/policies"
)

func TestReusePolicy(t *testing.T) {
	e, err := policies.DefaultEngine()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := policies.DefaultCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	proc := func(code string) *policies.Procedure {
		p, ok := cat.Procedure(code)
		if !ok {
			t.Fatalf("no procedure %s", code)
		}
		return p
	}
	tests := []struct {
		name       string
		q          policies.ReuseQuery
		allowed    bool
		legal      bool
		needsCons  bool
		determined string
	}{
		{"ok/police fetch birth certificate for passport with consent",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "fetch", Procedure: proc("CHC"), DocumentType: "GKS", Consent: true}, true, false, false, "reuse-with-consent"},
		{"fail/same without consent",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "fetch", Procedure: proc("CHC"), DocumentType: "GKS"}, false, false, true, ""},
		{"ok/police see availability for passport",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "list", Procedure: proc("CHC"), DocumentType: "GKS"}, true, false, false, "availability"},
		{"fail/a type the procedure does not use",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "fetch", Procedure: proc("CHC"), DocumentType: "GCNQSDD", Consent: true}, false, false, false, ""},
		{"fail/an agency kind that does not handle the procedure",
			policies.ReuseQuery{Agency: "G09", AgencyKind: "justice", Action: "fetch", Procedure: proc("CHC"), DocumentType: "GKS", Consent: true}, false, false, false, ""},
		{"ok/legal basis for identity card",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "fetch", Procedure: proc("CCCCD"), DocumentType: "XNCT"}, true, true, false, "legal-basis-identity-card"},
		{"fail/criminal record outside justice even with consent",
			policies.ReuseQuery{Agency: "H29", AgencyKind: "police", Action: "fetch", Procedure: proc("CHC"), DocumentType: "LLTP", Consent: true}, false, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.Decide(tt.q)
			if a.Allowed != tt.allowed || (a.LegalBasis != "") != tt.legal || a.NeedsConsent != tt.needsCons || len(a.Errors) > 0 {
				t.Fatalf("answer %+v\n%s", a, a.Explain(tt.q))
			}
			if tt.determined != "" && (len(a.Determined) == 0 || a.Determined[0].ID != tt.determined) {
				t.Fatalf("determined by %+v, want %s", a.Determined, tt.determined)
			}
			if ex := a.Explain(tt.q); !strings.HasPrefix(ex, map[bool]string{true: "ALLOW", false: "DENY"}[tt.allowed]) {
				t.Fatalf("explain disagrees: %s", ex)
			}
		})
	}
}

func TestPolicyAndCatalogueValidation(t *testing.T) {
	for name, src := range map[string]string{
		"no id":     `@reason("r") permit (principal, action, resource);`,
		"no reason": `@id("x") permit (principal, action, resource);`,
		"syntax":    `permit (principal action resource`,
	} {
		if _, err := policies.NewEngine(map[string][]byte{"x.cedar": []byte(src)}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, src := range map[string]string{
		"unknown kind":   `{"version":"1","agency_kinds":["a"],"document_types":[{"code":"T","name_vi":"t","name_en":"t","issuer_kinds":["b"]}],"procedures":[]}`,
		"undefined type": `{"version":"1","agency_kinds":["a"],"document_types":[],"procedures":[{"code":"P","name_vi":"p","name_en":"p","handler_kinds":["a"],"requires":["T"]}]}`,
		"no version":     `{"agency_kinds":[],"document_types":[],"procedures":[]}`,
		"unknown field":  `{"version":"1","agency_kinds":[],"document_types":[],"procedures":[],"extra":1}`,
	} {
		if _, err := policies.ParseCatalogue([]byte(src)); err == nil {
			t.Errorf("catalogue %s: accepted", name)
		}
	}
	cat, err := policies.DefaultCatalogue()
	if err != nil || len(cat.Procedures) < 20 {
		t.Fatalf("default catalogue: %v", err)
	}
}

// FuzzParseCatalogue: a catalogue file from an operator is accepted only when
// every procedure's document types are defined, and never panics.
func FuzzParseCatalogue(f *testing.F) {
	f.Add([]byte(`{"version":"1","agency_kinds":["a"],"document_types":[{"code":"T","name_vi":"t","name_en":"t","issuer_kinds":["a"]}],"procedures":[{"code":"P","name_vi":"p","name_en":"p","handler_kinds":["a"],"requires":["T"]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := policies.ParseCatalogue(b)
		if err != nil {
			return
		}
		types := map[string]bool{}
		for _, dt := range c.DocumentTypes {
			types[dt.Code] = true
		}
		for _, p := range c.Procedures {
			for _, ty := range p.Types() {
				if !types[ty] {
					t.Fatalf("accepted procedure %s with undefined type %s", p.Code, ty)
				}
			}
		}
	})
}
