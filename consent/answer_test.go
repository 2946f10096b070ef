package consent_test

import (
	"reflect"
	"testing"

	"kho/consent"
)

// What an answer records under its Idempotency-Key reads back as the same
// answer; a result no answer records is not taken for one.
func TestRecordedAnswer(t *testing.T) {
	const req = "9dc9c10b-e6e2-4ea6-9d19-4999667637c5"
	for _, tt := range []struct {
		result    string
		want      *consent.Answer
		consentID string
	}{
		{"approved:c-1", &consent.Answer{Request: req, Status: "approved"}, "c-1"},
		{"pending:guardian,self", &consent.Answer{Request: req, Status: "pending", Awaiting: []string{"guardian", "self"}}, ""},
		{"pending:self", &consent.Answer{Request: req, Status: "pending", Awaiting: []string{"self"}}, ""},
		{"denied", &consent.Answer{Request: req, Status: "denied"}, ""},
	} {
		a, id, ok := consent.RecordedAnswer(req, tt.result)
		if !ok || !reflect.DeepEqual(a, tt.want) || id != tt.consentID {
			t.Errorf("%q: %+v %q %v, want %+v %q", tt.result, a, id, ok, tt.want, tt.consentID)
		}
	}
	for _, bad := range []string{"", "approved", "approved:", "pending:", "denied:x", "01a206c5-f13c-7992-989b-000000000000"} {
		if a, _, ok := consent.RecordedAnswer(req, bad); ok {
			t.Errorf("%q read as an answer: %+v", bad, a)
		}
	}
}
