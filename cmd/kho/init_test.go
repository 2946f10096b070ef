package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"kho"
	"kho/internal/freeport"
	"kho/internal/testenv"
	"kho/storage"
	"kho/vault"
)

// operatorCA makes an operator's own root CA and agency-signing
// intermediate, as PEM files.
func operatorCA(t *testing.T, dir string) (root *x509.Certificate, rootFile, intFile, keyFile string) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator Root CA", Organization: []string{"operator"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	intKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	intTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Operator Agency Signing CA", Organization: []string{"operator"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(3, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	intDER, err := x509.CreateCertificate(rand.Reader, intTmpl, root, &intKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(intKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return root, write("root.pem", "CERTIFICATE", rootDER), write("int.pem", "CERTIFICATE", intDER), write("int.key", "EC PRIVATE KEY", keyDER)
}

// A Vault of the test's own, in dev mode, so init runs on a fresh server.
func freshVault(t *testing.T) string {
	t.Helper()
	st := testenv.Stack(t)
	// A dev-mode Vault also listens for its cluster on the port after.
	port, err := freeport.Range(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(st.VaultBinary, "server", "-dev", "-dev-root-token-id=operator-token", "-dev-listen-address="+addr, "-dev-no-store-token")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	url := "http://" + addr
	api, err := vault.NewAPIClient(url, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if vault.Health(testenv.Context(t), api) == nil {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatal("test vault did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestInitImportsAnOperatorsCAChain(t *testing.T) {
	st := testenv.Stack(t)
	ctx := testenv.Context(t)
	dir := t.TempDir()
	root, rootFile, intFile, keyFile := operatorCA(t, dir)
	addr := freshVault(t)
	out := filepath.Join(dir, "secrets")
	user := testenv.Name("t-init-")
	t.Setenv("VAULT_TOKEN", "operator-token")
	t.Setenv("MINIO_ROOT_USER", st.MinIORootUser)
	t.Setenv("MINIO_ROOT_PASSWORD", st.MinIORootPassword)
	t.Cleanup(func() { _ = testenv.MinIORoot(t).RemoveUser(ctx, user) })
	args := []string{"init", "--vault-addr", addr, "--minio-endpoint", st.MinIOEndpoint, "--minio-bucket", st.MinIOBucket, "--minio-user", user,
		"--out", out, "--khod-cidr", "127.0.0.1/32", "--public-url", "https://kho.example.vn", "--import-root", rootFile, "--import-intermediate", intFile, "--import-intermediate-key", keyFile}
	msg, err := runKho(t, args...)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	if !strings.Contains(msg, "ready for khod") {
		t.Fatalf("init said: %s", msg)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(out, name)); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", name, fi.Mode().Perm())
		}
		return strings.TrimSpace(string(b))
	}
	// khod logs in with what init wrote, and gets certificates that chain to
	// the operator's root.
	khod, err := vault.New(ctx, vault.Config{Address: addr, RoleID: read("vault-role-id"), SecretID: read("vault-secret-id")})
	if err != nil {
		t.Fatalf("khod login with init's credentials: %v", err)
	}
	defer khod.Close()
	tr, _ := vault.NewTransit(khod)
	got, err := tr.RootCertificate(ctx)
	if err != nil || !got.Equal(root) {
		t.Fatalf("the deployment root is not the operator's: %v", err)
	}
	signer, _, err := tr.Signer(ctx, "agency-T01")
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "T01"}, SignatureAlgorithm: x509.ECDSAWithSHA256}, signer)
	cert, err := tr.SignCSR(ctx, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range cert.Chain {
		inter.AddCert(c)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		t.Fatalf("an agency certificate does not chain to the operator's root: %v", err)
	}
	// It tells a validator where the chain and revocation are: khod's /pki/.
	if got := cert.Leaf.CRLDistributionPoints; len(got) != 1 || got[0] != "https://kho.example.vn/pki/ca.crl" {
		t.Fatalf("CRL distribution points %v", got)
	}
	if got := cert.Leaf.IssuingCertificateURL; len(got) != 1 || got[0] != "https://kho.example.vn/pki/ca.crt" {
		t.Fatalf("issuing certificate URLs %v", got)
	}
	if der, err := tr.PKIFile(ctx, vault.PKICACRL); err != nil {
		t.Fatal(err)
	} else if _, err := x509.ParseRevocationList(der); err != nil {
		t.Fatalf("%s: %v", vault.PKICACRL, err)
	}
	// The operator's root key is offline, and so is its CRL.
	if _, err := tr.PKIFile(ctx, vault.PKIRootCRL); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("the root's CRL: %v", err)
	}
	m, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: st.MinIOEndpoint, AccessKey: read("minio-access-key"), SecretKey: read("minio-secret-key"), Bucket: st.MinIOBucket})
	if err != nil || m.Health(ctx) != nil {
		t.Fatalf("init's MinIO user cannot reach the bucket: %v", err)
	}
	// Running init again keeps the imported chain.
	if _, err := runKho(t, args[:len(args)-6]...); err != nil {
		t.Fatalf("second init: %v", err)
	}
	if got, err := tr.RootCertificate(ctx); err != nil || !got.Equal(root) {
		t.Fatal("a second init replaced the chain")
	}
	_ = fmt.Sprint
}
