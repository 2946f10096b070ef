package signing_test

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"kho/internal/demo"
	"kho/internal/testenv"
	"kho/signing"
	"kho/vault"
)

// countingTransport counts the HTTP requests that reach Vault.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// BenchmarkSignPDF1MiB signs a 1 MiB PDF and reports signatures per second
// and the Vault round trips per signature, counted on the wire (the goal is
// one: the certificate and public key are fetched once, then each signature
// is a single Transit sign call).
func BenchmarkSignPDF1MiB(b *testing.B) {
	ctx := testenv.Context(b)
	db := testenv.DB(b, true)
	if _, err := demo.Seed(ctx, db); err != nil {
		b.Fatal(err)
	}
	st := testenv.Stack(b)
	counter := &countingTransport{next: http.DefaultTransport}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = st.VaultAddr
	cfg.HttpClient = &http.Client{Transport: counter}
	api, err := vaultapi.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	api.ClearToken()
	login, err := api.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": st.VaultRoleID, "secret_id": st.VaultSecretID})
	if err != nil {
		b.Fatal(err)
	}
	api.SetToken(login.Auth.ClientToken)
	b.Cleanup(func() { _, _ = api.Logical().Write("auth/token/revoke-self", nil) })
	keys, err := vault.NewTransitWith(api)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := signing.New(signing.Config{DB: db, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	pdf := samplePDF(string(bytes.Repeat([]byte("x"), 1<<20)))
	if _, err := signer.Sign(ctx, pdf, signing.Options{Agency: agencyJ}); err != nil {
		b.Fatal(err) // warms the key and the certificate
	}
	before := counter.n.Load()
	b.SetBytes(int64(len(pdf)))
	for b.Loop() {
		if _, err := signer.Sign(ctx, pdf, signing.Options{Agency: agencyJ}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(counter.n.Load()-before)/float64(b.N), "vault-calls/sig")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
}
