package api

import (
	"testing"

	"kho"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		h           string
		first, last int64
		ranged, ok  bool
	}{
		{"bytes=0-9", 0, 9, true, true},
		{"bytes=10-", 10, 99, true, true},
		{"bytes=-5", 95, 99, true, true},
		{"bytes=-500", 0, 99, true, true},
		{"bytes=0-1,5-6", 0, 0, false, true}, // several ranges: the whole document
		{"items=0-1", 0, 0, false, true},
		{"bytes=5-1", 0, 0, true, false},
		{"bytes=x-1", 0, 0, true, false},
		{"bytes=-0", 0, 0, true, false},
		{"bytes=", 0, 0, true, false},
		{"bytes=100-", 0, 0, true, false}, // starts past the end: 416
		{"bytes=90-500", 90, 99, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			r, ranged, err := parseRange(tt.h, 100)
			if (err == nil) != tt.ok || ranged != tt.ranged {
				t.Fatalf("parseRange = %+v, %v, %v", r, ranged, err)
			}
			if tt.ok && tt.ranged && (r.First != tt.first || r.Last != tt.last) {
				t.Fatalf("range %+v, want %d-%d", r, tt.first, tt.last)
			}
		})
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=10-", "bytes=1-2,3-4", "bytes=99999999999999999999-"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size <= 0 {
			return
		}
		r, ranged, err := parseRange(h, size)
		if err != nil {
			if kho.ErrorCode(err) != kho.EINVALID {
				t.Fatalf("code %s", kho.ErrorCode(err))
			}
			return
		}
		if ranged && (r.First < 0 || r.Last < r.First || r.Last >= size) {
			t.Fatalf("range %+v from %q", r, h)
		}
	})
}
