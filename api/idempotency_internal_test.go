package api

import (
	"testing"

	"kho"
)

// A token's scope is a set: the same scopes in another order, or named
// twice, are the same caller for its Idempotency-Keys; other scopes, or
// none, are another.
func TestOwnerOfTakesTheScopeAsASet(t *testing.T) {
	agency := func(scope string) kho.Principal {
		return kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.15.H29", Scoped: true, Scope: scope}
	}
	a := ownerOf(agency("consent:request documents:read"))
	for _, same := range []string{"documents:read consent:request", "documents:read  consent:request consent:request"} {
		if ownerOf(agency(same)) != a {
			t.Errorf("scope %q is another caller than %q", same, "consent:request documents:read")
		}
	}
	for _, other := range []kho.Principal{agency("consent:request"), agency("documents:read"), {Kind: kho.PrincipalAgency, Agency: "000.00.15.H29"}} {
		if ownerOf(other) == a {
			t.Errorf("%+v is the same caller as a token with both scopes", other)
		}
	}
}
