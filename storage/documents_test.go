package storage_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kho"
	"kho/internal/testenv"
	"kho/storage"
)

func TestDepositAndReadBack(t *testing.T) {
	f := newFixture(t)
	body := pdf("Nguyen Van A, born 1990")
	m := meta(citizenA, "GKS", "application/pdf")
	m.DossierCode, m.ResultNo, m.ProcedureCode = "000.06.16.G09-231215-0001", 1, "CLLTP"
	d := f.deposit(t, asAgencyJ, m, body)
	if d.Source != kho.SourceAgencyIssued || d.Issuer != agencyJ || d.Size <= int64(len(body)) || d.Status != kho.StatusValid ||
		d.ResultCode != "000.06.16.G09-231215-0001-KQ1" || d.Version != 1 || d.ChainID != d.ID {
		t.Fatalf("deposited: %+v", d)
	}
	// The agency's PDF is stored signed: the original bytes, then the
	// incremental update carrying the signature.
	for _, p := range []kho.Principal{asCitizenA, asAgencyJ, asOfficerJ} {
		got, err := f.read(t, p, d.ID)
		if err != nil || !bytes.HasPrefix(got, body) || !bytes.Contains(got[len(body):], []byte("/ETSI.CAdES.detached")) || int64(len(got)) != d.Size {
			t.Fatalf("read as %s: %d bytes, %v", p.Kind, len(got), err)
		}
	}
	// The same result cannot be deposited twice.
	if _, err := f.svc.Deposit(f.ctx, asAgencyJ, m, bytes.NewReader(body)); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("second deposit of a result: %v", err)
	}
	// A citizen's own upload is self-declared.
	own := f.deposit(t, asCitizenB, meta("", "XNCT", "text/plain"), []byte("tôi xác nhận cư trú"))
	if own.Source != kho.SourceSelfDeclared || own.Issuer != "" {
		t.Fatalf("self upload: %+v", own)
	}
	if got, err := f.read(t, asCitizenB, own.ID); err != nil || string(got) != "tôi xác nhận cư trú" {
		t.Fatalf("self read: %q %v", got, err)
	}
}

func TestDepositRejectsBadContent(t *testing.T) {
	f := newFixture(t, func(c *storage.Config) { c.MaxSize, c.MaxPDFSize = 4096, 2048 })
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 100)...)
	tests := []struct {
		name string
		p    kho.Principal
		m    *kho.DepositMetadata
		body []byte
		code string
	}{
		{"fail/declared pdf, content png", asAgencyJ, meta(citizenA, "GKS", "application/pdf"), png, kho.EINVALID},
		{"fail/pdf header, broken pdf", asAgencyJ, meta(citizenA, "GKS", "application/pdf"), []byte("%PDF-1.4\nthis is not a pdf at all\n%%EOF\n"), kho.EINVALID},
		{"fail/empty", asAgencyJ, meta(citizenA, "GKS", "text/plain"), nil, kho.EINVALID},
		{"fail/too large", asAgencyJ, meta(citizenA, "GKS", "text/plain"), bytes.Repeat([]byte("a"), 5000), kho.ETOOLARGE},
		{"fail/pdf too large", asAgencyJ, meta(citizenA, "GKS", "application/pdf"), append(pdf("x"), bytes.Repeat([]byte(" "), 3000)...), kho.ETOOLARGE},
		{"fail/unknown type", asAgencyJ, meta(citizenA, "NOPE", "text/plain"), []byte("x"), kho.EINVALID},
		{"fail/unregistered agency", kho.Principal{Kind: kho.PrincipalAgency, Agency: "Z99"}, meta(citizenA, "GKS", "text/plain"), []byte("x"), kho.EFORBIDDEN},
		{"fail/citizen into another's store", asCitizenB, meta(citizenA, "GKS", "text/plain"), []byte("x"), kho.ENOTFOUND},
		{"fail/security officer", kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}, meta(citizenA, "GKS", "text/plain"), []byte("x"), kho.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.Deposit(f.ctx, tt.p, tt.m, bytes.NewReader(tt.body))
			if kho.ErrorCode(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
		})
	}
	var n int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM documents`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after refused deposits: %d %v", n, err)
	}
}

// No plaintext byte reaches MinIO's disk or PostgreSQL. Controls show the
// searches would find a marker that is there.
func TestNoPlaintextAtRest(t *testing.T) {
	f := newFixture(t)
	marker := "KHO-PLAINTEXT-MARKER-" + testenv.Name("")
	summaryMarker := "KHO-METADATA-CONTROL-" + testenv.Name("")
	m := meta(citizenA, "GKS", "text/plain")
	m.Summary = summaryMarker
	d := f.deposit(t, asAgencyJ, m, []byte(strings.Repeat(marker+"\n", 200)))
	pd := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "application/pdf"), pdf(marker))
	for _, id := range []kho.DocumentID{d.ID, pd.ID} {
		if got, err := f.read(t, asCitizenA, id); err != nil || !bytes.Contains(got, []byte(marker)) {
			t.Fatalf("read back: %v", err)
		}
	}

	controlObject := f.prefix + "control"
	f.putRaw(t, controlObject, []byte("CONTROL-"+marker[:10]+"-VISIBLE"))
	dataDir := filepath.Join(testenv.RepoDir(t), ".kho", "minio", "data")
	if dir := os.Getenv("KHO_STATE_DIR"); dir != "" {
		dataDir = filepath.Join(dir, "minio", "data")
	}
	if !dirContains(t, dataDir, []byte("CONTROL-"+marker[:10]+"-VISIBLE")) {
		t.Fatalf("control: a plain object is not found in %s; the search proves nothing", dataDir)
	}
	if dirContains(t, dataDir, []byte(marker)) {
		t.Fatal("plaintext marker found in MinIO's data directory")
	}

	dump := pgDump(t, f.db.Schema())
	if !bytes.Contains(dump, []byte(summaryMarker)) {
		t.Fatal("control: the metadata marker is not in the dump; the search proves nothing")
	}
	if bytes.Contains(dump, []byte(marker)) {
		t.Fatal("plaintext marker found in pg_dump")
	}
}

func dirContains(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || found {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, needle) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func pgDump(t *testing.T, schema string) []byte {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
		if len(matches) == 0 {
			t.Fatal("pg_dump not found")
		}
		bin = matches[len(matches)-1]
	}
	out, err := exec.Command(bin, "--no-owner", "--schema="+schema, "--dbname="+testenv.DatabaseURL(t)).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

func TestTamperedOrSwappedObjectsAreDetected(t *testing.T) {
	f := newFixture(t)
	big := bytes.Repeat([]byte("Lorem ipsum dolor sit amet. "), 20000) // several age chunks
	a := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), big)
	b := f.deposit(t, asAgencyP, meta(citizenA, "XNCT", "text/plain"), []byte("another document of the same store"))
	c := f.deposit(t, asAgencyJ, meta(citizenB, "GKS", "text/plain"), []byte("a document of another store"))
	objA, objB, objC := f.objectOf(t, a.ID), f.objectOf(t, b.ID), f.objectOf(t, c.ID)
	rawA, rawB, rawC := f.rawObject(t, objA), f.rawObject(t, objB), f.rawObject(t, objC)
	if bytes.Contains(rawA, big[:100]) {
		t.Fatal("object holds plaintext")
	}

	expectIntegrity := func(t *testing.T, id kho.DocumentID, p kho.Principal) {
		t.Helper()
		before := f.auditCount(t, "document.integrity_failure", id)
		got, err := f.read(t, p, id)
		if kho.ErrorCode(err) != kho.EINTEGRITY {
			t.Fatalf("read returned %d bytes and %v; want an integrity error", len(got), err)
		}
		if after := f.auditCount(t, "document.integrity_failure", id); after != before+1 {
			t.Fatalf("integrity failures recorded: %d -> %d", before, after)
		}
	}
	t.Run("fail/one byte flipped in the payload", func(t *testing.T) {
		bad := bytes.Clone(rawA)
		bad[len(bad)/2] ^= 0x01
		f.putRaw(t, objA, bad)
		// Whatever bytes came before the error were authentic: the
		// tampered chunk itself is never released.
		c, err := f.svc.Open(f.ctx, asCitizenA, a.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c.Body)
		c.Body.Close()
		if kho.ErrorCode(err) != kho.EINTEGRITY || !bytes.Equal(got, big[:len(got)]) || len(got) >= len(big) {
			t.Fatalf("read %d bytes, err %v", len(got), err)
		}
		expectIntegrity(t, a.ID, asCitizenA)
		f.putRaw(t, objA, rawA)
	})
	t.Run("fail/one byte flipped in the header", func(t *testing.T) {
		bad := bytes.Clone(rawA)
		bad[60] ^= 0x01
		f.putRaw(t, objA, bad)
		expectIntegrity(t, a.ID, asCitizenA)
		f.putRaw(t, objA, rawA)
	})
	t.Run("fail/truncated", func(t *testing.T) {
		f.putRaw(t, objA, rawA[:len(rawA)-100])
		expectIntegrity(t, a.ID, asCitizenA)
		f.putRaw(t, objA, rawA)
	})
	t.Run("fail/objects swapped within a store", func(t *testing.T) {
		f.putRaw(t, objA, rawB)
		f.putRaw(t, objB, rawA)
		expectIntegrity(t, a.ID, asCitizenA)
		expectIntegrity(t, b.ID, asCitizenA)
		f.putRaw(t, objA, rawA)
		f.putRaw(t, objB, rawB)
	})
	t.Run("fail/object copied from another store", func(t *testing.T) {
		f.putRaw(t, objB, rawC)
		expectIntegrity(t, b.ID, asCitizenA)
		f.putRaw(t, objB, rawB)
	})
	t.Run("fail/wrapped key swapped in PostgreSQL", func(t *testing.T) {
		if _, err := f.db.Pool.Exec(f.ctx, `UPDATE documents SET wrapped_key = (SELECT wrapped_key FROM documents WHERE id = $2) WHERE id = $1`, b.ID, a.ID); err != nil {
			t.Fatal(err)
		}
		expectIntegrity(t, b.ID, asCitizenA)
	})
	t.Run("fail/recorded hash changed in PostgreSQL", func(t *testing.T) {
		if _, err := f.db.Pool.Exec(f.ctx, `UPDATE documents SET sha256 = sha256('x'::bytea) WHERE id = $1`, c.ID); err != nil {
			t.Fatal(err)
		}
		// The manifest signature no longer matches: refused before any byte.
		expectIntegrity(t, c.ID, asCitizenB)
	})
	t.Run("ok/restored", func(t *testing.T) {
		if got, err := f.read(t, asCitizenA, a.ID); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("restored object: %v", err)
		}
	})
}

func TestAccessIsOwnerOrIssuerOnly(t *testing.T) {
	f := newFixture(t)
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("secret"))
	own := f.deposit(t, asCitizenA, meta("", "XNCT", "text/plain"), []byte("mine"))
	biz := f.deposit(t, asFinance, meta(business, "GCNDKDN", "text/plain"), []byte("enterprise registration"))
	rep := kho.Principal{Kind: kho.PrincipalBusinessRep, Person: citizenA, Business: business, TokenID: "t-r"}
	tests := []struct {
		name string
		p    kho.Principal
		id   kho.DocumentID
		ok   bool
	}{
		{"ok/owner", asCitizenA, d.ID, true},
		{"ok/issuer", asAgencyJ, d.ID, true},
		{"ok/issuer's officer", asOfficerJ, d.ID, true},
		{"ok/business representative", rep, biz.ID, true},
		{"fail/another citizen", asCitizenB, d.ID, false},
		{"fail/another agency", asAgencyP, d.ID, false},
		{"fail/the issuer of nothing here reads a self-declared document", asAgencyJ, own.ID, false},
		{"fail/representative reading the person's store as the business", rep, d.ID, false},
		{"fail/security officer", kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}, d.ID, false},
		{"fail/operator", asOperator, d.ID, false},
		{"fail/unknown id", asCitizenA, kho.NewDocumentID(), false},
		{"fail/malformed id", asCitizenA, "../../etc/passwd", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := f.auditCount(t, "document.read", tt.id)
			_, err := f.read(t, tt.p, tt.id)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got := f.auditCount(t, "document.read", tt.id); got != reads+1 {
					t.Fatalf("reads recorded %d -> %d, want exactly one more", reads, got)
				}
				return
			}
			// Refusals look like absence, so nobody learns what exists.
			if kho.ErrorCode(err) != kho.ENOTFOUND {
				t.Fatalf("got %v, want not_found", err)
			}
			if _, err := f.svc.Get(f.ctx, tt.p, tt.id); kho.ErrorCode(err) != kho.ENOTFOUND {
				t.Fatalf("metadata: %v", err)
			}
			if _, err := f.svc.Verify(f.ctx, tt.p, tt.id); kho.ErrorCode(err) != kho.ENOTFOUND {
				t.Fatalf("verify: %v", err)
			}
			if got := f.auditCount(t, "document.read", tt.id); got != reads {
				t.Fatal("a refused read was recorded as a read")
			}
		})
	}
	var denied int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND document_id = $1`, d.ID).Scan(&denied); err != nil || denied == 0 {
		t.Fatalf("refusals recorded: %d %v", denied, err)
	}
}

func TestRangeReads(t *testing.T) {
	f := newFixture(t)
	body := make([]byte, 300_000) // five age chunks
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), body)
	tests := []struct {
		name        string
		first, last int64
		want        []byte
	}{
		{"ok/start", 0, 99, body[:100]},
		{"ok/across a chunk boundary", 65_500, 65_600, body[65_500:65_601]},
		{"ok/end clipped to size", 299_990, 400_000, body[299_990:]},
		{"ok/one byte", 150_000, 150_000, body[150_000:150_001]},
		{"ok/open-ended", 299_000, -1, body[299_000:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := f.auditCount(t, "document.read", d.ID)
			c, err := f.svc.Open(f.ctx, asCitizenA, d.ID, &storage.ByteRange{First: tt.first, Last: tt.last})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c.Body)
			c.Body.Close()
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %d bytes (%v), want %d", len(got), err, len(tt.want))
			}
			if f.auditCount(t, "document.read", d.ID) != reads+1 {
				t.Fatal("a range read is not recorded exactly once")
			}
		})
	}
	for _, r := range []storage.ByteRange{{First: 300_000, Last: 300_001}, {First: 300_000, Last: -1}, {First: 10, Last: 5}, {First: -1, Last: 5}} {
		_, err := f.svc.Open(f.ctx, asCitizenA, d.ID, &r)
		var outside *storage.RangeError
		if kho.ErrorCode(err) != kho.EINVALID || !errors.As(err, &outside) || outside.Size != 300_000 {
			t.Errorf("range %+v: %v", r, err)
		}
	}
	// Suffix ranges are resolved against the size the caller need not know.
	for _, tc := range []struct {
		suffix int64
		want   []byte
	}{{50, body[300_000-50:]}, {1 << 40, body}} {
		c, err := f.svc.Open(f.ctx, asCitizenA, d.ID, &storage.ByteRange{Suffix: tc.suffix})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c.Body)
		c.Body.Close()
		if err != nil || !bytes.Equal(got, tc.want) || c.Range.Last != 299_999 {
			t.Fatalf("suffix %d: %d bytes, range %+v, %v", tc.suffix, len(got), c.Range, err)
		}
	}
}

func TestSupersedeRevokeAndList(t *testing.T) {
	f := newFixture(t)
	v1 := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("version 1"))
	if _, err := f.svc.Supersede(f.ctx, asAgencyP, v1.ID, meta("", "GKS", "text/plain"), strings.NewReader("hijack")); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("supersede by another agency: %v", err)
	}
	if _, err := f.svc.Supersede(f.ctx, asCitizenA, v1.ID, meta("", "GKS", "text/plain"), strings.NewReader("edit")); kho.ErrorCode(err) != kho.EFORBIDDEN {
		t.Fatalf("supersede by the owner of an agency document: %v", err)
	}
	v2, err := f.svc.Supersede(f.ctx, asOfficerJ, v1.ID, meta("", "GKS", "text/plain"), strings.NewReader("version 2"))
	if err != nil {
		t.Fatal(err)
	}
	if v2.Version != 2 || v2.ChainID != v1.ID || v2.Supersedes == nil || *v2.Supersedes != v1.ID {
		t.Fatalf("v2: %+v", v2)
	}
	if _, err := f.svc.Supersede(f.ctx, asAgencyJ, v1.ID, meta("", "GKS", "text/plain"), strings.NewReader("v3 from v1")); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("superseding a superseded version: %v", err)
	}
	old, err := f.svc.Get(f.ctx, asCitizenA, v1.ID)
	if err != nil || old.Status != kho.StatusSuperseded || old.SupersededBy == nil || *old.SupersededBy != v2.ID {
		t.Fatalf("old version: %+v %v", old, err)
	}
	if got, err := f.read(t, asCitizenA, v1.ID); err != nil || string(got) != "version 1" {
		t.Fatalf("the owner still reads the old version: %q %v", got, err)
	}

	if _, err := f.svc.Revoke(f.ctx, asAgencyJ, v2.ID, ""); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("revoke without reason: %v", err)
	}
	r, err := f.svc.Revoke(f.ctx, asAgencyJ, v2.ID, "cấp sai thông tin / issued with wrong data")
	if err != nil || r.Status != kho.StatusRevoked {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	if _, err := f.svc.Revoke(f.ctx, asAgencyJ, v2.ID, "again"); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("revoke twice: %v", err)
	}

	expired := meta(citizenA, "XNCT", "text/plain")
	expired.IssuedOn, _ = kho.ParseDate("2019-12-20")
	from, _ := kho.ParseDate("2020-01-01")
	until, _ := kho.ParseDate("2021-01-01")
	expired.ValidFrom, expired.ValidUntil = &from, &until
	e := f.deposit(t, asAgencyP, expired, []byte("old residence"))
	for i := range 3 {
		f.deposit(t, asAgencyP, meta(citizenA, "CCCD", "text/plain"), []byte{byte('0' + i)})
	}
	h, err := f.svc.Resolve(f.ctx, asAgencyP, citizenA)
	if err != nil {
		t.Fatal(err)
	}
	all, err := f.svc.List(f.ctx, asCitizenA, h, storage.ListFilter{})
	if err != nil || len(all.Documents) != 6 {
		t.Fatalf("owner lists %d, %v", len(all.Documents), err)
	}
	if all.Documents[0].CreatedAt.Before(all.Documents[5].CreatedAt) {
		t.Fatal("listing is not newest first")
	}
	byStatus := map[kho.DocumentStatus]int{}
	for _, d := range all.Documents {
		byStatus[d.Status]++
	}
	if byStatus[kho.StatusExpired] != 1 || byStatus[kho.StatusRevoked] != 1 || byStatus[kho.StatusSuperseded] != 1 || byStatus[kho.StatusValid] != 3 {
		t.Fatalf("statuses: %v", byStatus)
	}
	onlyP, err := f.svc.List(f.ctx, asAgencyP, h, storage.ListFilter{})
	if err != nil || len(onlyP.Documents) != 4 {
		t.Fatalf("agency P sees %d documents (its own four), %v", len(onlyP.Documents), err)
	}
	ex, err := f.svc.List(f.ctx, asCitizenA, h, storage.ListFilter{Status: kho.StatusExpired})
	if err != nil || len(ex.Documents) != 1 || ex.Documents[0].ID != e.ID {
		t.Fatalf("expired filter: %v", err)
	}
	// Pages of two, following cursors, give every document once.
	seen := map[kho.DocumentID]bool{}
	cursor := kho.DocumentID("")
	for pages := 0; ; pages++ {
		pg, err := f.svc.List(f.ctx, asCitizenA, h, storage.ListFilter{Limit: 2, Cursor: cursor})
		if err != nil || pages > 5 {
			t.Fatalf("paging: %v", err)
		}
		for _, d := range pg.Documents {
			if seen[d.ID] {
				t.Fatalf("document %s on two pages", d.ID)
			}
			seen[d.ID] = true
		}
		if pg.NextCursor == "" {
			break
		}
		cursor = pg.NextCursor
	}
	if len(seen) != 6 {
		t.Fatalf("paging saw %d documents", len(seen))
	}
	if _, err := f.svc.List(f.ctx, asCitizenB, h, storage.ListFilter{}); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("another citizen lists: %v", err)
	}
	if _, err := f.svc.List(f.ctx, asCitizenA, h, storage.ListFilter{Status: "lost"}); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("bad status: %v", err)
	}
}

func TestVerifyReport(t *testing.T) {
	f := newFixture(t)
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "application/pdf"), pdf("verify me"))
	r, err := f.svc.Verify(f.ctx, asCitizenA, d.ID)
	if err != nil || !r.Valid || !r.Signature.Valid || r.Signature.SigningKey != "agency-"+string(agencyJ) || !r.Content.Valid || r.Content.SHA256 != d.SHA256 {
		t.Fatalf("report: %+v %v", r, err)
	}
	obj := f.objectOf(t, d.ID)
	raw := f.rawObject(t, obj)
	raw[len(raw)-5] ^= 0xff
	f.putRaw(t, obj, raw)
	r, err = f.svc.Verify(f.ctx, asCitizenA, d.ID)
	if err != nil || r.Valid || !r.Signature.Valid || r.Content.Valid || r.Content.Error == "" {
		t.Fatalf("report on a tampered object: %+v %v", r, err)
	}
}

// After erasure the documents are unreadable even when an attacker restores
// both the ciphertext and the PostgreSQL rows from before.
func TestCryptoShreddingSurvivesRestoredBackups(t *testing.T) {
	f := newFixture(t)
	d := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("to be forgotten"))
	obj := f.objectOf(t, d.ID)
	raw := f.rawObject(t, obj)
	var wrapped string
	var version int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT wrapped_key, key_version FROM documents WHERE id = $1`, d.ID).Scan(&wrapped, &version); err != nil {
		t.Fatal(err)
	}
	h, _ := f.svc.Resolve(f.ctx, asCitizenA, citizenA)

	// A legal hold blocks erasure, with the reason.
	until := time.Now().Add(30 * 24 * time.Hour)
	hold, err := f.svc.PlaceHold(f.ctx, asAgencyP, h, storage.HoldRequest{LegalBasis: "Quyết định 12/QĐ-CA (mẫu / sample)", Reason: "hồ sơ đang được điều tra", Until: &until})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Erase(f.ctx, asCitizenA, h); kho.ErrorCode(err) != kho.ECONFLICT || !strings.Contains(kho.ErrorMessage(err), string(agencyP)) {
		t.Fatalf("erase under a legal hold: %v", err)
	}
	if got, err := f.read(t, asCitizenA, d.ID); err != nil || string(got) != "to be forgotten" {
		t.Fatalf("a refused erasure changed something: %v", err)
	}
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE legal_holds SET released_at = now() WHERE id = $1`, hold.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Erase(f.ctx, asCitizenB, h); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("erase by another citizen: %v", err)
	}
	n, err := f.svc.Erase(f.ctx, asCitizenA, h)
	if err != nil || n != 1 {
		t.Fatalf("erase: %d %v", n, err)
	}
	if _, err := f.read(t, asCitizenA, d.ID); kho.ErrorCode(err) != kho.ENOTFOUND {
		t.Fatalf("read after erasure: %v", err)
	}
	// The store's number is gone with it: the issuer still sees a
	// tombstone, without name or content.
	tomb, err := f.svc.Get(f.ctx, asAgencyJ, d.ID)
	if err != nil || tomb.Status != kho.StatusErased || tomb.Name != "" {
		t.Fatalf("tombstone: %+v %v", tomb, err)
	}
	// Restore everything from "backups".
	f.putRaw(t, obj, raw)
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE documents SET status = 'valid', object_name = $2, wrapped_key = $3, key_version = $4, erased_at = NULL WHERE id = $1`,
		d.ID, obj, wrapped, version); err != nil {
		t.Fatal(err)
	}
	// Even the number erasure removed, restored from a backup.
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE subjects SET id = $2 WHERE handle = $1`, h, citizenA); err != nil {
		t.Fatal(err)
	}
	got, err := f.read(t, asCitizenA, d.ID)
	if err == nil || bytes.Contains(got, []byte("forgotten")) {
		t.Fatalf("restored backup is readable: %q %v", got, err)
	}
	if kho.ErrorCode(err) != kho.EINTEGRITY {
		t.Fatalf("restored backup: %v, want integrity", err)
	}
	// The store takes no new documents; the erasure is in the audit trail.
	if _, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), strings.NewReader("x")); kho.ErrorCode(err) != kho.ECONFLICT {
		t.Fatalf("deposit into an erased store: %v", err)
	}
	var erased int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE action = 'subject.erased' AND subject_handle = $1 AND outcome = 'success'`, h).Scan(&erased); err != nil || erased != 1 {
		t.Fatalf("erasure events: %d %v", erased, err)
	}
	// The two refusals (under the hold; by another citizen) are on the
	// store's record too.
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM audit_events WHERE action = 'subject.erased' AND subject_handle = $1 AND outcome = 'denied'`, h).Scan(&erased); err != nil || erased != 2 {
		t.Fatalf("refused erasures recorded: %d %v", erased, err)
	}
}

func TestRotateAndRewrap(t *testing.T) {
	f := newFixture(t)
	var docs []*kho.Document
	for i := range 5 {
		docs = append(docs, f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte{'d', byte('0' + i)}))
	}
	other := f.deposit(t, asAgencyJ, meta(citizenB, "GKS", "text/plain"), []byte("other subject"))
	h, _ := f.svc.Resolve(f.ctx, asCitizenA, citizenA)
	if err := f.svc.RotateKey(f.ctx, asOperator, h); err != nil {
		t.Fatal(err)
	}
	docs = append(docs, f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("after rotation")))
	var versions []int
	rows, _ := f.db.Pool.Query(f.ctx, `SELECT key_version FROM documents WHERE subject_handle = $1 ORDER BY id`, h)
	for rows.Next() {
		var v int
		_ = rows.Scan(&v)
		versions = append(versions, v)
	}
	rows.Close()
	if len(versions) != 6 || versions[0] != 1 || versions[5] != 2 {
		t.Fatalf("versions before rewrap: %v", versions)
	}
	objectsBefore := map[kho.DocumentID][]byte{}
	for _, d := range docs {
		objectsBefore[d.ID] = f.rawObject(t, f.objectOf(t, d.ID))
	}

	var reports []storage.RewrapProgress
	pr, err := f.op.RewrapAll(f.ctx, asOperator, 2, func(p storage.RewrapProgress) { reports = append(reports, p) })
	if err != nil {
		t.Fatal(err)
	}
	if pr.Keys != 5 || pr.SubjectsDone != pr.Subjects || len(reports) < 3 {
		t.Fatalf("progress: %+v after %d reports", pr, len(reports))
	}
	var stale int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM documents WHERE subject_handle = $1 AND key_version <> 2`, h).Scan(&stale); err != nil || stale != 0 {
		t.Fatalf("wrapped keys on an old version: %d %v", stale, err)
	}
	if latest, minDec, err := f.keys.Versions(f.ctx, h); err != nil || latest != 2 || minDec != 2 {
		t.Fatalf("key versions after rewrap: %d %d %v", latest, minDec, err)
	}
	for _, d := range append(docs, other) {
		p := asCitizenA
		if d.ID == other.ID {
			p = asCitizenB
		}
		if _, err := f.read(t, p, d.ID); err != nil {
			t.Fatalf("read after rewrap: %v", err)
		}
	}
	for _, d := range docs {
		if !bytes.Equal(objectsBefore[d.ID], f.rawObject(t, f.objectOf(t, d.ID))) {
			t.Fatal("rewrap touched the ciphertext")
		}
	}
	// Running again finds nothing to do.
	if pr, err := f.op.RewrapAll(f.ctx, asOperator, 2, nil); err != nil || pr.Keys != 0 {
		t.Fatalf("second rewrap: %+v %v", pr, err)
	}
}

// A deposit whose transaction fails after the object was stored leaves no
// row; the reconciler removes the object.
func TestInterruptedDepositIsReconciled(t *testing.T) {
	f := newFixture(t)
	keep := f.deposit(t, asAgencyJ, meta(citizenA, "GKS", "text/plain"), []byte("a good document"))
	// Break the transaction's last step for real: the outbox is gone.
	if _, err := f.db.Pool.Exec(f.ctx, `ALTER TABLE outbox RENAME TO outbox_gone`); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Deposit(f.ctx, asAgencyJ, meta(citizenA, "GKS", "text/plain"), strings.NewReader("interrupted"))
	if err == nil {
		t.Fatal("deposit succeeded without an outbox")
	}
	if _, err := f.db.Pool.Exec(f.ctx, `ALTER TABLE outbox_gone RENAME TO outbox`); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM documents`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("rows: %d %v", rows, err)
	}
	objects := func() []string {
		var names []string
		if err := f.blobs.Walk(f.ctx, f.prefix, func(n string, _ time.Time) error { names = append(names, n); return nil }); err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := objects(); len(got) != 2 {
		t.Fatalf("objects before reconciling: %v", got)
	}
	// Within the grace period nothing is touched: the object could belong to
	// a deposit still under way.
	if n, err := f.svc.Reconcile(f.ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("reconcile within grace: %d %v", n, err)
	}
	n, err := f.svc.Reconcile(f.ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("reconcile: %d %v", n, err)
	}
	if got := objects(); len(got) != 1 || got[0] != f.objectOf(t, keep.ID) {
		t.Fatalf("objects after reconciling: %v", got)
	}
	if _, err := f.read(t, asCitizenA, keep.ID); err != nil {
		t.Fatalf("the good document: %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	if _, err := storage.New(storage.Config{}); kho.ErrorCode(err) != kho.EINVALID {
		t.Fatalf("empty config: %v", err)
	}
	_ = errors.New
}
