package api_test

import (
	"crypto/x509"
	"net/http"
	"testing"
)

// Validators fetch the CA certificate and its CRL from the URLs in kho's
// certificates, without credentials; anything else under /pki/ is 404.
func TestPKIFilesAreServedToValidators(t *testing.T) {
	d := newDocServer(t, 0)
	resp, b := request(t, http.MethodGet, d.url+"/pki/ca.crt", "", "", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-cert" {
		t.Fatalf("ca.crt: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ca, err := x509.ParseCertificate(b)
	if err != nil || !ca.IsCA {
		t.Fatalf("ca.crt is not a CA certificate: %v", err)
	}
	resp, b = request(t, http.MethodGet, d.url+"/pki/ca.crl", "", "", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("ca.crl: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("the CRL is not the CA's: %v", err)
	}
	for _, p := range []string{"/pki/root.crt", "/pki/root.crl"} {
		if resp, _ := request(t, http.MethodGet, d.url+p, "", "", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	resp, b = request(t, http.MethodGet, d.url+"/pki/..%2f..%2fsys", "", "", nil, nil)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown file: %d %s", resp.StatusCode, b)
	}
}
