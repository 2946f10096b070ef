package api_test

import (
	"context"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"kho/api"
	"kho/audit"
	"sync"

	"encoding/base64"
	"encoding/json"
	"testing"
)

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }

func decodeSeg(t testing.TB, s string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noDocuments stands in for the document service in tests of routes that do
// not reach it; a call would panic on the nil interface.
type noDocuments struct{ api.Documents }

// recordingAudit keeps recorded events in memory, for router tests that do
// not reach a database; its readers are never called there.
type recordingAudit struct {
	api.Audit
	mu     sync.Mutex
	events []audit.Event
}

func (r *recordingAudit) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

// noConsents stands in for the consent service where it is not reached.
type noConsents struct{ api.Consents }

func noKeys(context.Context) (jwk.Set, error) { return jwk.NewSet(), nil }
