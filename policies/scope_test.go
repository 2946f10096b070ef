package policies_test

import (
	"strings"
	"testing"

	"kho"
	"kho/policies"
)

// An access token's scope bounds an agency's system before anything else
// is looked at; what no scope grants, a scoped token never does.
func TestScopeBoundsAgencyTokens(t *testing.T) {
	agency := kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.15.H29", TokenID: "t"}
	for _, tt := range []struct {
		name   string
		scoped bool
		scope  string
		action policies.Action
		ok     bool
	}{
		{"fail/read-only token deposits", true, "documents:read", policies.DepositDocument, false},
		{"fail/deposit token fetches", true, "documents:deposit", policies.FetchDocument, false},
		{"fail/fetch token asks for consent", true, "documents:fetch", policies.RequestConsent, false},
		{"fail/no scope searches the audit trail", true, "documents:read documents:fetch documents:deposit consent:request", policies.SearchAudit, false},
		{"fail/empty scope", true, "", policies.ListStore, false},
		{"ok/unscoped (identity provider) token goes on to the rules", false, "", policies.ListStore, true},
		{"ok/read token lists", true, "documents:read", policies.ListStore, true},
		{"ok/deposit token is answered its deposit again", true, "documents:deposit", policies.AnswerDeposit, true},
		{"fail/deposit token reads", true, "documents:deposit", policies.ReadDocument, false},
		{"fail/read token is answered a deposit", true, "documents:read", policies.AnswerDeposit, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := agency
			p.Scoped, p.Scope = tt.scoped, tt.scope
			d := policies.Authorize(p, tt.action, policies.Resource{Agency: &policies.Agency{Code: p.Agency}, Store: &policies.Store{Subject: "001090000001", Kind: kho.SubjectCitizen}})
			scopeRefusal := !d.Allowed && strings.Contains(d.Message, "scope")
			if tt.ok == scopeRefusal {
				t.Fatalf("%+v", d)
			}
		})
	}
}
