package kho_test

import (
	"testing"

	"kho"
)

func TestParseSubjectID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want kho.SubjectID
		kind kho.SubjectKind
		ok   bool
	}{
		{"ok/citizen", "001090000001", "001090000001", kho.SubjectCitizen, true},
		{"ok/citizen with spaces", " 079085000002 ", "079085000002", kho.SubjectCitizen, true},
		{"ok/enterprise 10 digits", "0101234567", "0101234567", kho.SubjectBusiness, true},
		{"ok/branch 13 digits", "0101234567001", "0101234567001", kho.SubjectBusiness, true},
		{"ok/branch with hyphen", "0101234567-001", "0101234567001", kho.SubjectBusiness, true},
		{"fail/empty", "", "", "", false},
		{"fail/11 digits", "00109000000", "", "", false},
		{"fail/letters", "00109000000A", "", "", false},
		{"fail/province 000", "000090000001", "", "", false},
		{"fail/province 097", "097090000001", "", "", false},
		{"fail/hyphen in wrong place", "010123456-7001", "", "", false},
		{"fail/unicode digits", "００１090000001", "", "", false},
		{"fail/born in the future", "001299000123", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kho.ParseSubjectID(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseSubjectID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if !tt.ok {
				if kho.ErrorCode(err) != kho.EINVALID {
					t.Errorf("code = %s, want %s", kho.ErrorCode(err), kho.EINVALID)
				}
				return
			}
			if got != tt.want || got.Kind() != tt.kind {
				t.Errorf("got %q (%s), want %q (%s)", got, got.Kind(), tt.want, tt.kind)
			}
		})
	}
}

func TestSubjectIDErrorsDoNotRepeatTheIdentifier(t *testing.T) {
	for _, in := range []string{"12345", "000090000001", "0010900000x1"} {
		_, err := kho.ParseSubjectID(in)
		if err == nil {
			t.Fatalf("%q accepted", in)
		}
		if msg := err.Error(); len(in) > 0 && contains(msg, in) {
			t.Errorf("error %q repeats the identifier", msg)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestAgencyCodeValidate(t *testing.T) {
	tests := []struct {
		code kho.AgencyCode
		ok   bool
	}{
		{"G09", true},
		{"000.06.16.G09", true},
		{"000.00.15.H29", true},
		{"", false},
		{"g09", false},
		{"000..G09", false},
		{"000.06.16.G09.", false},
		{"A.B.C.D.E.F", false},
		{"G09; DROP TABLE", false},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if err := tt.code.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate(%q) = %v, want ok=%v", tt.code, err, tt.ok)
			}
		})
	}
}

func FuzzParseSubjectID(f *testing.F) {
	for _, s := range []string{"001090000001", "0101234567-001", "", "-", "0101234567-0011", "999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := kho.ParseSubjectID(s)
		if err != nil {
			if kho.ErrorCode(err) != kho.EINVALID {
				t.Fatalf("error code %s, want invalid", kho.ErrorCode(err))
			}
			return
		}
		// Whatever is accepted is canonical: digits only, a known length,
		// and parsing it again changes nothing.
		if err := id.Validate(); err != nil {
			t.Fatalf("accepted %q but Validate fails: %v", id, err)
		}
		again, err := kho.ParseSubjectID(string(id))
		if err != nil || again != id {
			t.Fatalf("not idempotent: %q -> %q, %v", id, again, err)
		}
	})
}
