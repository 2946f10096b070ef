package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"kho"
	"kho/audit"
	"kho/internal/testenv"
)

// Each security-relevant action produces exactly one event of its kind, and
// the trail still verifies afterwards.
func TestEverySecurityRelevantActionIsRecorded(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	count := func(action, outcome string) int {
		var n int
		if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = $1 AND outcome = $2`, action, outcome).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	officer := kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}
	operator := kho.Principal{Kind: kho.PrincipalOperator, Staff: "op01", TokenID: "cli"}
	var doc kho.Document
	expect := func(action, outcome string, do func()) {
		t.Helper()
		t.Run(action+"/"+outcome, func(t *testing.T) {
			before := count(action, outcome)
			do()
			if got := count(action, outcome); got != before+1 {
				t.Fatalf("%s/%s events: %d -> %d, want exactly one more", action, outcome, before, got)
			}
		})
	}
	get := func(p kho.Principal, path string) { d.call(t, p, "GET", path, "", nil, nil) }

	expect("document.deposited", "success", func() { doc = d.deposit(t, justice, textMeta, []byte("a result")) })
	id := string(doc.ID)
	expect("document.read", "success", func() { get(citizen, "/v1/documents/"+id+"/content") })
	expect("document.read", "denied", func() { get(stranger, "/v1/documents/"+id+"/content") })
	expect("document.metadata", "success", func() { get(citizen, "/v1/documents/"+id) })
	expect("documents.listed", "success", func() { get(citizen, "/v1/me/documents") })
	expect("document.verified", "success", func() { get(citizen, "/v1/documents/"+id+"/verification") })
	expect("document.superseded", "success", func() {
		ct, body := multipartBody(t, strings.Replace(textMeta, `"subject_id":"001090000001",`, "", 1), []byte("v2"))
		if resp, b := d.call(t, justice, "POST", "/v1/documents/"+id+"/versions", ct, body, nil); resp.StatusCode != 201 {
			t.Fatalf("supersede: %d %s", resp.StatusCode, b)
		}
	})
	v2 := d.deposit(t, justice, textMeta, []byte("another result"))
	expect("document.revoked", "success", func() {
		d.call(t, justice, "POST", "/v1/documents/"+string(v2.ID)+"/revocation", "application/json", strings.NewReader(`{"reason":"sai sót"}`), nil)
	})
	expect("subject.legal_hold", "success", func() {
		d.call(t, police, "POST", "/v1/subjects/"+string(doc.Subject)+"/legal-holds", "application/json", strings.NewReader(`{"legal_basis":"Quyết định 8/QĐ (mẫu)","until":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`), nil)
	})
	other := d.deposit(t, justice, strings.Replace(textMeta, "001090000001", "079085000002", 1), []byte("to erase"))
	expect("subject.erased", "success", func() { d.call(t, stranger, "POST", "/v1/subjects/"+string(other.Subject)+"/erasure", "", nil, nil) })
	expect("subject.key_rotated", "success", func() {
		if err := d.docs.Svc.RotateKey(ctx, operator, doc.Subject); err != nil {
			t.Fatal(err)
		}
	})
	expect("subject.keys_rewrapped", "success", func() {
		if _, err := d.docs.Operator.RewrapAll(ctx, operator, 100, nil); err != nil {
			t.Fatal(err)
		}
	})
	expect("object.reclaimed", "success", func() {
		if err := d.docs.Blobs.Put(ctx, d.docs.Prefix+"orphan", strings.NewReader("left behind"), -1); err != nil {
			t.Fatal(err)
		}
		if _, err := d.docs.Svc.Reconcile(ctx, 0); err != nil {
			t.Fatal(err)
		}
	})
	expect("document.integrity_failure", "failure", func() {
		var object string
		if err := d.docs.DB.Pool.QueryRow(ctx, `SELECT object_name FROM documents WHERE id = $1`, v2.ID).Scan(&object); err != nil {
			t.Fatal(err)
		}
		s3 := testenv.MinIORoot(t).S3()
		obj, _ := s3.GetObject(ctx, d.docs.Blobs.Bucket(), object, minio.GetObjectOptions{})
		raw, _ := io.ReadAll(obj)
		obj.Close()
		raw[len(raw)-3] ^= 1
		if _, err := s3.PutObject(ctx, d.docs.Blobs.Bucket(), object, bytes.NewReader(raw), int64(len(raw)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		// The transfer is aborted: read what comes and ignore the error.
		// A client on a reused connection would retry the GET after the
		// abort (a second, genuine read); this one does not reuse any.
		req, _ := http.NewRequest("GET", d.url+"/v1/documents/"+string(v2.ID)+"/content", nil)
		req.Header.Set("Authorization", "Bearer "+d.token(t, justice))
		once := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		if resp, err := once.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	expect("auth.failed", "denied", func() { request(t, "GET", d.url+"/v1/me", "not.a.token", "", nil, nil) })
	expect("audit.access_log_read", "success", func() { get(citizen, "/v1/me/access-log") })
	expect("audit.searched", "success", func() { get(officer, "/v1/audit/events?action=document.read") })
	expect("audit.searched", "denied", func() { get(citizen, "/v1/audit/events") })
	expect("audit.exported", "success", func() { get(officer, "/v1/audit/export") })

	if _, err := d.docs.Log.MakeCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := d.docs.Log.Verify(ctx)
	if err != nil || !r.OK() {
		t.Fatalf("trail after all actions: %+v %v", r, err)
	}
}

// The citizen's access log shows who read their document, with an inclusion
// proof, and never another store's events.
func TestCitizenAccessLogOverHTTP(t *testing.T) {
	d := newDocServer(t, 0)
	ctx := testenv.Context(t)
	doc := d.deposit(t, justice, textMeta, []byte("x"))
	d.call(t, justice, "GET", "/v1/documents/"+string(doc.ID)+"/content", "", nil, nil)
	d.deposit(t, justice, strings.Replace(textMeta, "001090000001", "079085000002", 1), []byte("someone else's"))
	if _, err := d.docs.Log.MakeCheckpoint(ctx); err != nil {
		t.Fatal(err)
	}
	resp, b := d.call(t, citizen, "GET", "/v1/me/access-log", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("access log: %d %s", resp.StatusCode, b)
	}
	if !bytes.Contains(b, []byte(`"action":"document.read"`)) || !bytes.Contains(b, []byte(`"actor_agency":"000.06.16.G09"`)) ||
		!bytes.Contains(b, []byte(`"proof":`)) || !bytes.Contains(b, []byte(`"checkpoint":`)) {
		t.Fatalf("access log lacks the agency's read or its proof: %s", b)
	}
	if bytes.Contains(b, []byte("001090000001")) {
		t.Fatal("the access log carries a personal identification number")
	}
	resp, b = d.call(t, stranger, "GET", "/v1/me/access-log", "", nil, nil)
	if resp.StatusCode != 200 || bytes.Contains(b, []byte(string(doc.ID))) {
		t.Fatalf("another citizen's log shows this document: %s", b)
	}
	// The public checkpoint and key.
	resp, b = request(t, "GET", d.url+"/audit/checkpoint", "", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("kho.test/audit\n")) {
		t.Fatalf("checkpoint: %d %s", resp.StatusCode, b)
	}
	resp, b = request(t, "GET", d.url+"/audit/key", "", "", nil, nil)
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("kho.test/audit+")) {
		t.Fatalf("key: %d %s", resp.StatusCode, b)
	}
}

// An export over HTTP ends at a checkpoint signed for it: every event in it,
// the export's own included, is proven, and `kho audit verify` finds none
// outside the checkpoints.
func TestExportIsCutAtACheckpoint(t *testing.T) {
	d := newDocServer(t, 0)
	d.deposit(t, justice, textMeta, []byte("a result"))
	officer := kho.Principal{Kind: kho.PrincipalSecurityOfficer, Staff: "so01"}
	resp, b := d.call(t, officer, "GET", "/v1/audit/export", "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("export: %d %s", resp.StatusCode, b)
	}
	r, err := audit.VerifyExport(bytes.NewReader(b), d.docs.Log.VerifierKey(), "kho.test/audit")
	if err != nil || !r.OK() || r.Outside != 0 || r.Covered != r.Events || r.Events == 0 {
		t.Fatalf("export: %+v %v", r, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if last := lines[len(lines)-2]; !strings.Contains(last, `"action":"audit.exported"`) {
		t.Fatalf("the export's own event is not its last: %s", last)
	}
}
