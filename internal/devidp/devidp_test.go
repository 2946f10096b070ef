package devidp_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kho"
	"kho/api"
	"kho/internal/devidp"
)

func TestParseAs(t *testing.T) {
	tests := []struct {
		in   string
		want kho.Principal
		ok   bool
	}{
		{"citizen:001090000001", kho.Principal{Kind: kho.PrincipalCitizen, Person: "001090000001"}, true},
		{"business:0101234567:001090000001", kho.Principal{Kind: kho.PrincipalBusinessRep, Business: "0101234567", Person: "001090000001"}, true},
		{"agency:000.06.16.G09", kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.06.16.G09"}, true},
		{"officer:000.06.16.G09:cb01", kho.Principal{Kind: kho.PrincipalAgencyOfficer, Agency: "000.06.16.G09", Staff: "cb01"}, true},
		{"security:so01", kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}, true},
		{"operator:op01", kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01"}, true},
		{"citizen:", kho.Principal{}, false},
		{"citizen:12345", kho.Principal{}, false},
		{"citizen:001090000001:extra", kho.Principal{}, false},
		{"business:0101234567", kho.Principal{}, false},
		{"business:001090000001:0101234567", kho.Principal{}, false},
		{"root:me", kho.Principal{}, false},
		{"", kho.Principal{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := devidp.ParseAs(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseAs = %+v, %v; want ok=%v", p, err, tt.ok)
			}
			if tt.ok && !reflect.DeepEqual(p, tt.want) {
				t.Fatalf("got %+v, want %+v", p, tt.want)
			}
		})
	}
}

// A minted token authenticates through the same middleware khod uses, and
// the key survives a reload.
func TestMintVerifiesThroughTheAuthenticator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idp.jwk.json")
	idp, err := devidp.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	again, err := devidp.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := again.PublicSet()
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.NewAuthenticator(context.Background(), "kho", []api.IssuerConfig{{Issuer: devidp.Issuer, KeySet: set, Kinds: kho.PrincipalKinds}})
	if err != nil {
		t.Fatal(err)
	}
	for _, as := range []string{"citizen:001090000001", "business:0101234567:079085000002", "agency:000.00.15.H29", "officer:000.00.15.H29:cb7", "security:so01", "operator:op01"} {
		t.Run(as, func(t *testing.T) {
			want, _ := devidp.ParseAs(as)
			tok, err := idp.Mint(want, "kho", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.Authenticate(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			got.Issuer, got.TokenID, got.ExpiresAt = "", "", time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip: %+v, want %+v", got, want)
			}
		})
	}
	// A token for another audience is refused.
	p, _ := devidp.ParseAs("citizen:001090000001")
	tok, _ := idp.Mint(p, "other", time.Minute)
	if _, err := a.Authenticate(context.Background(), tok); err == nil {
		t.Fatal("token for another audience accepted")
	}
}

func TestLoadRejectsWhatIsNotAPrivateKey(t *testing.T) {
	dir := t.TempDir()
	idp, err := devidp.LoadOrCreate(filepath.Join(dir, "k.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, _ := idp.PublicSet()
	pub, _ := set.Key(0)
	pubJSON, _ := jsonMarshal(pub)
	for name, body := range map[string][]byte{"public key only": pubJSON, "not json": []byte("hello"), "empty": nil} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			_ = os.WriteFile(p, body, 0o600)
			if _, err := devidp.Load(p); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
