package api

import (
	"testing"

	"kho"
	"kho/storage"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		h          string
		want       storage.ByteRange
		ranged, ok bool
	}{
		{"bytes=0-9", storage.ByteRange{First: 0, Last: 9}, true, true},
		{"bytes=10-", storage.ByteRange{First: 10, Last: -1}, true, true},
		{"bytes=-5", storage.ByteRange{Suffix: 5}, true, true},
		{"bytes=0-1,5-6", storage.ByteRange{}, false, true}, // several ranges: the whole document
		{"items=0-1", storage.ByteRange{}, false, true},
		{"bytes=5-1", storage.ByteRange{}, true, false},
		{"bytes=x-1", storage.ByteRange{}, true, false},
		{"bytes=-0", storage.ByteRange{}, true, false},
		{"bytes=", storage.ByteRange{}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			r, ranged, err := parseRange(tt.h)
			if (err == nil) != tt.ok || ranged != tt.ranged {
				t.Fatalf("parseRange = %+v, %v, %v", r, ranged, err)
			}
			if tt.ok && tt.ranged && *r != tt.want {
				t.Fatalf("range %+v, want %+v", *r, tt.want)
			}
		})
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=10-", "bytes=1-2,3-4", "bytes=99999999999999999999-", "bytes=100-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, ranged, err := parseRange(h)
		if err != nil {
			if kho.ErrorCode(err) != kho.EINVALID {
				t.Fatalf("code %s", kho.ErrorCode(err))
			}
			return
		}
		if ranged && r.Suffix <= 0 && (r.First < 0 || (r.Last >= 0 && r.Last < r.First)) {
			t.Fatalf("range %+v from %q", r, h)
		}
	})
}
