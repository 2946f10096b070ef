package kho_test

import (
	"testing"
	"time"

	"kho"
)

// The birth year a personal identification number encodes decides whether
// a guardian must consent and whether the child must too.
func TestAgeFromIdentificationNumber(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name            string
		id              kho.SubjectID
		year            int
		minor, childToo bool
	}{
		{"ok/adult born 1990", "001090000001", 1990, false, false},
		{"ok/child of 11", "001215000004", 2015, true, true},
		{"ok/child of 4", "001222000005", 2022, true, false},
		{"ok/born 2019: 6 or 7, so asked too", "001219000006", 2019, true, true},
		{"ok/born 2008: 17 or 18, the number cannot tell", "001208000007", 2008, false, true},
		{"ok/born 2007: adult", "001207000008", 2007, false, false},
		{"ok/woman born 1985", "079185000002", 1985, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y, ok := tt.id.BirthYear()
			if !ok || y != tt.year {
				t.Fatalf("birth year %d %v, want %d", y, ok, tt.year)
			}
			if tt.id.Minor(now) != tt.minor || tt.id.ChildMustConsent(now) != tt.childToo {
				t.Fatalf("minor %v child consents %v", tt.id.Minor(now), tt.id.ChildMustConsent(now))
			}
		})
	}
	if _, ok := kho.SubjectID("0101234567").BirthYear(); ok {
		t.Fatal("an enterprise code has no birth year")
	}
}
