package kho_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"kho"
)

func TestPrincipalValidate(t *testing.T) {
	const pin, ent = kho.SubjectID("001090000001"), kho.SubjectID("0101234567")
	tests := []struct {
		name string
		p    kho.Principal
		ok   bool
	}{
		{"ok/citizen", kho.Principal{Kind: kho.PrincipalCitizen, Person: pin}, true},
		{"ok/business rep", kho.Principal{Kind: kho.PrincipalBusinessRep, Person: pin, Business: ent}, true},
		{"ok/agency", kho.Principal{Kind: kho.PrincipalAgency, Agency: "G09"}, true},
		{"ok/agency officer", kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "G09", Staff: "cb01"}, true},
		{"ok/security officer", kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}, true},
		{"ok/operator", kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01"}, true},
		{"fail/unknown kind", kho.Principal{Kind: "admin", Staff: "x"}, false},
		{"fail/citizen without id", kho.Principal{Kind: kho.PrincipalCitizen}, false},
		{"fail/citizen with enterprise code", kho.Principal{Kind: kho.PrincipalCitizen, Person: ent}, false},
		{"fail/citizen with agency", kho.Principal{Kind: kho.PrincipalCitizen, Person: pin, Agency: "G09"}, false},
		{"fail/business rep without business", kho.Principal{Kind: kho.PrincipalBusinessRep, Person: pin}, false},
		{"fail/business rep for a person", kho.Principal{Kind: kho.PrincipalBusinessRep, Person: pin, Business: pin}, false},
		{"fail/agency with person", kho.Principal{Kind: kho.PrincipalAgency, Agency: "G09", Person: pin}, false},
		{"fail/agency bad code", kho.Principal{Kind: kho.PrincipalAgency, Agency: "g 09"}, false},
		{"fail/officer without staff", kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "G09"}, false},
		{"fail/operator bad staff", kho.Principal{Kind: kho.PrincipalOperator, Staff: "a b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && kho.ErrorCode(err) != kho.EINVALID {
				t.Errorf("code = %s", kho.ErrorCode(err))
			}
		})
	}
}

func TestPrincipalLogsNoPersonalData(t *testing.T) {
	p := kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "001090000001", Business: "0101234567", TokenID: "tok-1"}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("request", "principal", p)
	out := buf.String()
	for _, secret := range []string{"001090000001", "0101234567"} {
		if strings.Contains(out, secret) {
			t.Errorf("log line carries an identifier: %s", out)
		}
	}
	if !strings.Contains(out, `"kind":"business_rep"`) || !strings.Contains(out, `"token_id":"tok-1"`) {
		t.Errorf("log line lacks kind or token id: %s", out)
	}
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := kho.FromContext(context.Background()); ok {
		t.Fatal("empty context has a principal")
	}
	p := kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01"}
	got, ok := kho.FromContext(kho.NewContext(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("got %+v, %v", got, ok)
	}
	if sub, ok := p.ActsFor(); ok || sub != "" {
		t.Errorf("an operator owns no store, got %q", sub)
	}
	c := kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "001090000001", Business: "0101234567"}
	if sub, ok := c.ActsFor(); !ok || sub != "0101234567" {
		t.Errorf("business rep acts for %q, %v", sub, ok)
	}
}
