package consent_test

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kho"
	"kho/consent"
	"kho/internal/testenv"
)

// 50 agencies' requests race on a one-time consent: exactly one gets the
// document; the others are refused, and the consent shows one use.
func TestOneTimeConsentAdmitsExactlyOneOfFiftyParallelFetches(t *testing.T) {
	d := testenv.NewDocuments(t)
	ctx := testenv.Context(t)
	subject := kho.SubjectID("001090000777")
	doc := d.Deposit(t, agency(justice), subject, "GKS", "khai sinh", nil)
	terms := consent.Terms{Grantee: police, Procedure: "CHC", Purpose: "Cấp hộ chiếu / passport issuance",
		DocumentTypes: []string{"GKS"}, ValidUntil: time.Now().Add(time.Hour), Mode: "once"}
	// An older consent for the same purpose, revoked: the losers' reason is
	// still "used up", the newest consent's state, not "revoked".
	old, err := d.Consents.Grant(ctx, citizen(subject), terms, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Consents.SetStatus(ctx, citizen(subject), old.ID, consent.Revoked, "", false); err != nil {
		t.Fatal(err)
	}
	c, err := d.Consents.Grant(ctx, citizen(subject), terms, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var ok, usedUp atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			content, err := d.Svc.Fetch(ctx, agency(police), doc.ID, "CHC", nil)
			if err != nil {
				if kho.ErrorReason(err) == consent.ReasonConsentUsedUp {
					usedUp.Add(1)
				} else {
					t.Errorf("unexpected refusal: %v", err)
				}
				return
			}
			b, err := io.ReadAll(content.Body)
			content.Body.Close()
			if err != nil || string(b) != "khai sinh" {
				t.Errorf("read: %q %v", b, err)
				return
			}
			ok.Add(1)
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || usedUp.Load() != n-1 {
		t.Fatalf("%d fetches succeeded and %d were refused as used up; want 1 and %d", ok.Load(), usedUp.Load(), n-1)
	}
	var uses int
	if err := d.DB.Pool.QueryRow(ctx, `SELECT uses FROM consents WHERE id = $1`, c.ID).Scan(&uses); err != nil || uses != 1 {
		t.Fatalf("consent uses: %d %v", uses, err)
	}
	var reads, denied int
	if err := d.DB.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE outcome = 'success'), count(*) FILTER (WHERE outcome = 'denied')
		FROM audit_events WHERE action = 'document.read' AND document_id = $1`, doc.ID).Scan(&reads, &denied); err != nil || reads != 1 || denied != n-1 {
		t.Fatalf("audit: %d reads, %d refusals (%v)", reads, denied, err)
	}
}
