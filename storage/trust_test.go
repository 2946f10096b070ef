package storage_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"kho"
	"kho/internal/testenv"
	"kho/storage"
	"kho/vault"
)

// Attacks on the trust model, each of which worked once and must now fail.

var (
	asFinance  = kho.Principal{Kind: kho.PrincipalAgency, Agency: "000.00.12.H10", TokenID: "t-f"}
	asStranger = kho.Principal{Kind: kho.PrincipalBusinessRep, Person: "031200000003", Business: business, TokenID: "t-s"}
	asBizRep   = kho.Principal{Kind: kho.PrincipalBusinessRep, Person: citizenA, Business: business, TokenID: "t-r"}
)

// A justice office cannot deposit a passport, a land-use certificate, or
// anything else its kind does not issue; nor under another agency's dossier
// code; and result codes are the issuer's own.
func TestOnlyTheRightAgencyIssues(t *testing.T) {
	f := newFixture(t)
	for _, typ := range []string{"HC", "GCNQSDD", "CCCD"} {
		_, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, typ, "text/plain"), strings.NewReader("forged"))
		if kho.ErrorCode(err) != kho.EFORBIDDEN || kho.ErrorReason(err) != "not_issuer" {
			t.Fatalf("justice office deposits %s: %v", typ, err)
		}
	}
	// An officer of the justice office is no different.
	if _, err := f.svc.Deposit(f.ctx, asOfficerJ, meta(citizenA, "HC", "text/plain"), strings.NewReader("forged")); kho.ErrorCode(err) != kho.EFORBIDDEN {
		t.Fatalf("officer deposits a passport: %v", err)
	}
	// Nothing was stored, and the attempts are on the victim's record.
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("documents stored: %d %v", n, err)
	}
	h, err := f.svc.SubjectHandle(f.ctx, citizenA)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND action = 'document.deposited'
		AND outcome = 'denied' AND reason = 'not_issuer'`, h).Scan(&n); err != nil || n != 4 {
		t.Fatalf("refused deposits on the victim's record: %d %v", n, err)
	}

	// The police deposit a passport; a dossier code of the justice office's
	// unit is refused to them.
	m := meta(citizenA, "HC", "text/plain")
	m.DossierCode, m.ResultNo = "000.06.16.G09-240115-0001", 1
	if _, err := f.svc.Deposit(f.ctx, asAgencyP, m, strings.NewReader("passport")); kho.ErrorCode(err) != kho.EFORBIDDEN || kho.ErrorReason(err) != "dossier_of_another_agency" {
		t.Fatalf("police use the justice office's dossier code: %v", err)
	}
	m.DossierCode = "000.00.15.H29-240115-0001"
	f.deposit(t, asAgencyP, m, []byte("passport"))
	if _, err := f.svc.Deposit(f.ctx, asAgencyP, m, strings.NewReader("passport again")); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("the same result code twice: %v", err)
	}
	// The justice office's own code with the same sequence is its own.
	g := meta(citizenA, "GKS", "text/plain")
	g.DossierCode, g.ResultNo = "000.06.16.G09-240115-0001", 1
	f.deposit(t, asAgencyJ, g, []byte("birth certificate"))

	// A citizen's own upload of a passport stays allowed, and self-declared.
	d := f.deposit(t, asCitizenA, meta("", "HC", "text/plain"), []byte("my passport, scanned"))
	if d.Source != kho.SourceSelfDeclared || d.Issuer != "" {
		t.Fatalf("self-declared upload: %+v", d)
	}
	// Types belong in their kind of store.
	if _, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(business, "GKS", "text/plain"), strings.NewReader("x")); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("a birth certificate in an enterprise's store: %v", err)
	}
	if _, err := f.svc.Deposit(f.ctx, asFinance, meta(citizenA, "GCNDKDN", "text/plain"), strings.NewReader("x")); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("an enterprise registration in a citizen's store: %v", err)
	}
}

// A token naming a business its bearer does not represent (or no longer
// does) opens nothing: representation comes from PostgreSQL.
func TestBusinessClaimWithoutRepresentation(t *testing.T) {
	f := newFixture(t)
	doc := f.deposit(t, asFinance, meta(business, "GCNDKDN", "text/plain"), []byte("registration"))
	if _, err := f.db.Pool.Exec(f.ctx, `INSERT INTO business_representatives (business_handle, person_handle, role, valid_from, valid_until)
		SELECT b.handle, p.handle, 'authorised', now() - interval '30 days', now() - interval '1 second' FROM subjects b, subjects p
		WHERE b.id = $1 AND p.id = '031200000003'`, business); err != nil {
		t.Fatal(err)
	}
	for _, p := range []kho.Principal{asStranger, {Kind: kho.PrincipalBusinessRep, Person: citizenB, Business: "0109999999", TokenID: "t-x"}} {
		if _, err := f.svc.ListFor(f.ctx, p, "", storage.ListFilter{}); kho.ErrorCode(err) != kho.ENOTFOUND {
			t.Errorf("list: %v", err)
		}
		if _, err := f.read(t, p, doc.ID); kho.ErrorCode(err) != kho.ENOTFOUND {
			t.Errorf("read: %v", err)
		}
		if _, err := f.svc.Erase(f.ctx, p, doc.Subject); kho.ErrorCode(err) != kho.ENOTFOUND {
			t.Errorf("erase: %v", err)
		}
		if _, err := f.svc.Deposit(f.ctx, p, meta("", "GCNQSDD", "text/plain"), strings.NewReader("x")); kho.ErrorCode(err) != kho.ENOTFOUND {
			t.Errorf("deposit: %v", err)
		}
	}
	// The legal representative, current in PostgreSQL, reads; an
	// authorised person may not erase.
	if got, err := f.read(t, asBizRep, doc.ID); err != nil || string(got) != "registration" {
		t.Fatalf("legal representative reads: %v", err)
	}
	authorised := kho.Principal{Kind: kho.PrincipalBusinessRep, Person: citizenB, Business: business, TokenID: "t-au"}
	if _, err := f.svc.Erase(f.ctx, authorised, doc.Subject); kho.ErrorCode(err) != kho.EFORBIDDEN {
		t.Fatalf("authorised person erases: %v", err)
	}
	// Every refusal is on the business's record, naming the store.
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND outcome = 'denied'`, doc.Subject).Scan(&n); err != nil || n < 7 {
		t.Fatalf("refusals on the business's record: %d %v", n, err)
	}
}

// A guardian reads a ward's store only while the guardianship is current,
// and must name the ward: on_behalf_of is never ignored.
func TestGuardianNeedsACurrentGuardianship(t *testing.T) {
	f := newFixture(t)
	const ward = kho.SubjectID("001215000004")
	doc := f.deposit(t, asAgencyJ, meta(ward, "GKS", "text/plain"), []byte("ward's birth certificate"))
	if got, err := f.read(t, asCitizenA, doc.ID); err != nil || string(got) != "ward's birth certificate" {
		t.Fatalf("guardian reads: %v", err)
	}
	page, err := f.svc.ListFor(f.ctx, asCitizenA, ward, storage.ListFilter{})
	if err != nil || len(page.Documents) != 1 {
		t.Fatalf("guardian lists the ward's store: %v", err)
	}
	// The event names the guardian and the ward's store, with the capacity.
	var actingFor string
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT acting_for FROM audit_events WHERE action = 'documents.listed' AND subject_handle = $1 ORDER BY seq DESC LIMIT 1`,
		doc.Subject).Scan(&actingFor); err != nil || actingFor != "guardian" {
		t.Fatalf("acting_for %q %v", actingFor, err)
	}
	// Someone who is not the ward's guardian names the ward: refused.
	if _, err := f.svc.ListFor(f.ctx, asCitizenB, ward, storage.ListFilter{}); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("a stranger names the ward: %v", err)
	}
	// The guardianship ends: nothing more.
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE guardianships SET valid_until = current_date - 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.read(t, asCitizenA, doc.ID); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("read after the guardianship ended: %v", err)
	}
	if _, err := f.svc.ListFor(f.ctx, asCitizenA, ward, storage.ListFilter{}); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("list after the guardianship ended: %v", err)
	}
}

// A manifest re-signed with another agency's key (both keys live on the
// same signing mount) is not evidence: reads fail the integrity check and
// the report names the key that signed and the key that should have.
func TestManifestSignedByAnotherAgencyIsRefused(t *testing.T) {
	f := newFixture(t)
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("genuine"))
	m := storage.Manifest{Version: 1, DocumentID: d.ID, Subject: d.Subject, Type: d.Type, SHA256: d.SHA256, Size: d.Size,
		MediaType: d.MediaType, IssuedOn: d.IssueOn.String(), Issuer: string(d.Issuer)}
	forged, err := f.keys.SignDetached(f.ctx, "agency-"+string(agencyP), m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	// The control: the same signer's key verifies the forged signature.
	if key, _, err := f.keys.VerifyDetached(f.ctx, forged, m.Bytes()); err != nil || key != "agency-"+string(agencyP) {
		t.Fatalf("control: %s %v", key, err)
	}
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE documents SET signature = $2 WHERE id = $1`, d.ID, forged); err != nil {
		t.Fatal(err)
	}
	if _, err := f.read(t, asCitizenA, d.ID); kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("read of a re-signed document: %v", err)
	}
	r, err := f.svc.Verify(f.ctx, asCitizenA, d.ID)
	if err != nil || r.Valid || r.Signature.Valid || r.Signature.SigningKey != "agency-"+string(agencyP) || r.Signature.ExpectedKey != "agency-"+string(agencyJ) {
		t.Fatalf("report: %+v %v", r.Signature, err)
	}
}

// gatedReader gives its first chunk, then waits for release before the
// rest, saying when it started waiting.
type gatedReader struct {
	first, rest []byte
	waiting     chan struct{}
	release     chan struct{}
	stage       int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	switch g.stage {
	case 0:
		g.stage = 1
		return copy(p, g.first), nil
	case 1:
		close(g.waiting)
		<-g.release
		g.stage = 2
		n := copy(p, g.rest)
		g.rest = g.rest[n:]
		if len(g.rest) == 0 {
			g.stage = 3
		}
		return n, nil
	case 2:
		n := copy(p, g.rest)
		g.rest = g.rest[n:]
		if len(g.rest) == 0 {
			g.stage = 3
		}
		return n, nil
	}
	return 0, io.EOF
}

// A deposit that is mid-way when the store is erased (its file key already
// wrapped, its bytes streaming) does not commit a readable document into the
// erased store, and leaves no subject key behind.
func TestDepositRacingAnErasure(t *testing.T) {
	f := newFixture(t)
	coded := meta(citizenA, "GKS", "text/plain")
	coded.DossierCode, coded.ResultNo, coded.Number, coded.Summary = "000.06.16.G09-240115-0009", 1, "123/GKS", "khai sinh của ..."
	first := f.deposit(t, asAgencyJ, coded, []byte("first"))
	g := &gatedReader{first: bytes.Repeat([]byte("a"), 1000), rest: bytes.Repeat([]byte("b"), 100_000),
		waiting: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.Deposit(f.ctx, asAgencyP, meta(citizenA, "CCCD", "text/plain"), g)
		done <- err
	}()
	select {
	case <-g.waiting: // the key is wrapped, the stream is flowing
	case err := <-done:
		t.Fatalf("deposit ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("deposit never reached its stream")
	}
	if _, err := f.svc.Erase(f.ctx, asCitizenA, first.Subject); err != nil {
		t.Fatalf("erase: %v", err)
	}
	close(g.release)
	err := <-done
	if kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("deposit racing an erasure: %v", err)
	}
	var readable int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM documents WHERE subject_handle = $1 AND (status <> 'erased' OR object_name IS NOT NULL
		OR name <> '' OR number <> '' OR summary <> '' OR dossier_code IS NOT NULL OR result_code IS NOT NULL)`,
		first.Subject).Scan(&readable); err != nil || readable != 0 {
		t.Fatalf("documents left in the erased store: %d %v", readable, err)
	}
	if _, _, err := f.keys.Versions(f.ctx, first.Subject); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("the erased store's key exists: %v", err)
	}
	// The store's number is gone; its consents, holds and deposits with it.
	var id *string
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT id FROM subjects WHERE handle = $1`, first.Subject).Scan(&id); err != nil || id != nil {
		t.Fatalf("identification number kept after erasure: %v %v", id, err)
	}
	until := time.Now().Add(24 * time.Hour)
	if _, err := f.svc.PlaceHold(f.ctx, asAgencyP, first.Subject, storage.HoldRequest{LegalBasis: "QĐ 3/QĐ (mẫu)", Until: &until}); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("hold on an erased store: %v", err)
	}
}

// A legal hold states its legal basis and its end, within the maximum; the
// owner sees it; an operator may end it with a stated reason.
func TestLegalHoldsNeedABasisAndAnEnd(t *testing.T) {
	f := newFixture(t, func(c *storage.Config) { c.MaxHold = 365 * 24 * time.Hour })
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("kept"))
	soon, far := time.Now().Add(30*24*time.Hour), time.Now().Add(400*24*time.Hour)
	for name, req := range map[string]storage.HoldRequest{
		"no legal basis": {Until: &soon},
		"no end":         {LegalBasis: "QĐ 4/QĐ (mẫu)"},
		"past the max":   {LegalBasis: "QĐ 4/QĐ (mẫu)", Until: &far},
		"control chars":  {LegalBasis: "QĐ\x00 4", Until: &soon},
		"C1 control":     {LegalBasis: "QĐ\u0085 4", Until: &soon},
		"bidi override":  {LegalBasis: "QĐ \u202e4/QĐ", Until: &soon},
	} {
		if _, err := f.svc.PlaceHold(f.ctx, asAgencyP, d.Subject, req); kho.ErrorCode(err) != kho.EINVALID {
			t.Errorf("%s: %v", name, err)
		}
	}
	var invalid int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND action = 'subject.legal_hold' AND outcome = 'denied'`,
		d.Subject).Scan(&invalid); err != nil || invalid != 6 {
		t.Fatalf("malformed holds on the store's record: %d %v", invalid, err)
	}
	if _, err := f.svc.PlaceHold(f.ctx, asCitizenA, d.Subject, storage.HoldRequest{LegalBasis: "QĐ 4/QĐ (mẫu)", Until: &soon}); kho.ErrorCode(err) != kho.EFORBIDDEN {
		t.Fatalf("a citizen places a hold: %v", err)
	}
	hold, err := f.svc.PlaceHold(f.ctx, asAgencyP, d.Subject, storage.HoldRequest{LegalBasis: "QĐ 4/QĐ (mẫu)", Reason: "điều tra", Until: &soon})
	if err != nil {
		t.Fatal(err)
	}
	holds, err := f.svc.ListHolds(f.ctx, asCitizenA, "")
	if err != nil || len(holds) != 1 || holds[0].LegalBasis != "QĐ 4/QĐ (mẫu)" || holds[0].Agency != agencyP {
		t.Fatalf("the owner's view of holds: %+v %v", holds, err)
	}
	if _, err := f.svc.ListHolds(f.ctx, asCitizenB, citizenA); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("a stranger's view of the holds: %v", err)
	}
	// The erasure refused by the hold is on the owner's record.
	if _, err := f.svc.Erase(f.ctx, asCitizenA, d.Subject); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("erase under a hold: %v", err)
	}
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND action = 'subject.erased' AND outcome = 'denied' AND reason = 'legal_hold'`,
		d.Subject).Scan(&n); err != nil || n != 1 {
		t.Fatalf("refused erasure recorded: %d %v", n, err)
	}
	// Another agency cannot release it, and its attempt is on the record;
	// an operator needs a reason.
	if err := f.svc.ReleaseHold(f.ctx, asAgencyJ, d.Subject, hold.ID, ""); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("release by another agency: %v", err)
	}
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND action = 'subject.legal_hold_released' AND outcome = 'denied'
		AND actor_agency = $2`, d.Subject, string(agencyJ)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("refused release on the record: %d %v", n, err)
	}
	if err := f.svc.ReleaseHold(f.ctx, asOperator, d.Subject, hold.ID, ""); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("operator release without a reason: %v", err)
	}
	if err := f.svc.ReleaseHold(f.ctx, asOperator, d.Subject, hold.ID, "Quyết định hủy bỏ 5/QĐ"); err != nil {
		t.Fatalf("operator release: %v", err)
	}
	var by, why string
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT released_by, release_reason FROM legal_holds WHERE id = $1`, hold.ID).Scan(&by, &why); err != nil ||
		by != "operator:op01" || why != "Quyết định hủy bỏ 5/QĐ" {
		t.Fatalf("release recorded as %q %q %v", by, why, err)
	}
	// Free text stays out of the immutable trail.
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE details::text LIKE '%điều tra%' OR details::text LIKE '%hủy bỏ%' OR coalesce(reason, '') LIKE '%hủy%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("free text in the audit trail: %d %v", n, err)
	}
}

// countingProxy forwards to a server and counts the requests matching a
// predicate, as they go over the wire.
type countingProxy struct {
	url   string
	count atomic.Int64
}

func newCountingProxy(t *testing.T, target string, match func(*http.Request) bool) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingProxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // request signatures cover the Host the client used
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if match(r) {
			c.count.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// A fetch the reuse policy or the consent refuses is decided before any
// object is read or any key unwrapped: no Vault decrypt and no MinIO GET go
// over the wire. The refusal is on the subject's record, with the agency
// and the procedure.
func TestRefusedFetchTouchesNeitherVaultNorMinIO(t *testing.T) {
	st := testenv.Stack(t)
	minioProxy := newCountingProxy(t, "http://"+strings.TrimPrefix(strings.TrimPrefix(st.MinIOEndpoint, "http://"), "https://"), func(r *http.Request) bool {
		return r.Method == http.MethodGet && !r.URL.Query().Has("location")
	})
	vaultProxy := newCountingProxy(t, st.VaultAddr, func(r *http.Request) bool {
		return strings.Contains(r.URL.Path, "/kho-subjects/decrypt/")
	})
	ctx := testenv.Context(t)
	blobs, err := storage.NewMinIO(storage.MinIOConfig{Endpoint: minioProxy.url, AccessKey: st.MinIOAccessKey, SecretKey: st.MinIOSecretKey, Bucket: st.MinIOBucket})
	if err != nil {
		t.Fatal(err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = vaultProxy.url
	api, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	api.ClearToken()
	login, err := api.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": st.VaultRoleID, "secret_id": st.VaultSecretID})
	if err != nil {
		t.Fatal(err)
	}
	api.SetToken(login.Auth.ClientToken)
	t.Cleanup(func() { _, _ = api.Logical().Write("auth/token/revoke-self", nil) })
	keys, err := vault.NewTransitWith(api)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *storage.Config) { c.Blobs, c.Keys, c.Signer = blobs, keys, keys })
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("birth certificate"))

	gets, decrypts := minioProxy.count.Load(), vaultProxy.count.Load()
	refusals := []struct {
		p         kho.Principal
		procedure string
		code      string
	}{
		{asAgencyP, "CHC", kho.EFORBIDDEN}, // policy admits with consent; there is none
		{asFinance, "CHC", kho.ENOTFOUND},  // not a handler of the procedure
		{asAgencyP, "DKDN", kho.ENOTFOUND}, // a procedure that does not use the type
		{asCitizenB, "CHC", kho.ENOTFOUND}, // not an agency
		{asAgencyP, "NOPE", kho.EINVALID},  // no such procedure
	}
	for _, r := range refusals {
		_, err := f.svc.Fetch(f.ctx, r.p, d.ID, r.procedure, nil)
		if kho.ErrorCode(err) != r.code {
			t.Fatalf("%s for %s: %v", r.p.Agency, r.procedure, err)
		}
	}
	if g, v := minioProxy.count.Load()-gets, vaultProxy.count.Load()-decrypts; g != 0 || v != 0 {
		t.Fatalf("refused fetches made %d MinIO GETs and %d Vault decrypts", g, v)
	}
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE subject_handle = $1 AND action = 'document.read' AND outcome = 'denied'
		AND actor_agency = $2 AND purpose = 'CHC' AND reason = 'consent_required'`, d.Subject, string(agencyP)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the refusal on the subject's record: %d %v", n, err)
	}
	// The control: the owner's read goes over both wires.
	if _, err := f.read(t, asCitizenA, d.ID); err != nil {
		t.Fatal(err)
	}
	if g, v := minioProxy.count.Load()-gets, vaultProxy.count.Load()-decrypts; g == 0 || v == 0 {
		t.Fatalf("the counters miss a read: %d GETs, %d decrypts", g, v)
	}
}
