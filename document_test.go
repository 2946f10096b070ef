package kho_test

import (
	"strings"
	"testing"
	"time"

	"kho"
)

const goodMeta = `{"subject_id":"001090000001","type":"GKS","name":"Giấy khai sinh","number":"12/2024/KS","issued_on":"2024-01-15",
"valid_from":"2024-01-15","valid_until":"2034-01-15","dossier_code":"000.06.16.G09-231215-0001","procedure_code":"DKKH","result_no":1,
"media_type":"application/pdf"}`

func TestParseDepositMetadata(t *testing.T) {
	m, err := kho.ParseDepositMetadata([]byte(goodMeta))
	if err != nil {
		t.Fatal(err)
	}
	if m.DossierCode.ResultCode(m.ResultNo) != "000.06.16.G09-231215-0001-KQ1" || m.IssuedOn.String() != "2024-01-15" {
		t.Fatalf("parsed: %+v", m)
	}
	tests := []struct {
		name string
		json string
		code string
	}{
		{"fail/not json", `{"type":`, kho.EINVALID},
		{"fail/unknown field", strings.Replace(goodMeta, `"number"`, `"numbr"`, 1), kho.EINVALID},
		{"fail/trailing data", goodMeta + `{}`, kho.EINVALID},
		{"fail/bad subject", strings.Replace(goodMeta, "001090000001", "12345", 1), kho.EINVALID},
		{"fail/lower-case type", strings.Replace(goodMeta, `"GKS"`, `"gks"`, 1), kho.EINVALID},
		{"fail/empty name", strings.Replace(goodMeta, `"Giấy khai sinh"`, `"   "`, 1), kho.EINVALID},
		{"fail/control characters", strings.Replace(goodMeta, `"Giấy khai sinh"`, `"a\u0000b"`, 1), kho.EINVALID},
		{"fail/bad date", strings.Replace(goodMeta, `"issued_on":"2024-01-15"`, `"issued_on":"15/01/2024"`, 1), kho.EINVALID},
		{"fail/impossible date", strings.Replace(goodMeta, `"issued_on":"2024-01-15"`, `"issued_on":"2024-02-30"`, 1), kho.EINVALID},
		{"fail/validity backwards", strings.Replace(goodMeta, `"2034-01-15"`, `"2023-01-15"`, 1), kho.EINVALID},
		{"fail/dossier code", strings.Replace(goodMeta, "000.06.16.G09-231215-0001", "G09-2312-1", 1), kho.EINVALID},
		{"fail/dossier receipt date", strings.Replace(goodMeta, "231215", "231345", 1), kho.EINVALID},
		{"fail/result without dossier", strings.Replace(goodMeta, `"dossier_code":"000.06.16.G09-231215-0001",`, ``, 1), kho.EINVALID},
		{"fail/media type", strings.Replace(goodMeta, "application/pdf", "application/x-msdownload", 1), kho.EINVALID},
		{"fail/no issue date", strings.Replace(goodMeta, `"issued_on":"2024-01-15",`, ``, 1), kho.EINVALID},
		{"fail/too large", `{"name":"` + strings.Repeat("a", kho.MaxMetadataSize) + `"}`, kho.ETOOLARGE},
		{"fail/wrong type of field", strings.Replace(goodMeta, `"result_no":1`, `"result_no":"1"`, 1), kho.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := kho.ParseDepositMetadata([]byte(tt.json))
			if kho.ErrorCode(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if strings.Contains(kho.ErrorMessage(err), "001090000001") {
				t.Fatalf("error repeats the subject id: %v", err)
			}
		})
	}
}

func TestEffectiveStatus(t *testing.T) {
	until, _ := kho.ParseDate("2024-06-30")
	d := &kho.Document{Status: kho.StatusValid, ValidUntil: &until}
	if got := d.EffectiveStatus(time.Date(2024, 6, 30, 23, 0, 0, 0, time.UTC)); got != kho.StatusValid {
		t.Errorf("on its last day: %s", got)
	}
	if got := d.EffectiveStatus(time.Date(2024, 7, 1, 0, 0, 1, 0, time.UTC)); got != kho.StatusExpired {
		t.Errorf("the day after: %s", got)
	}
	d.Status = kho.StatusRevoked
	if got := d.EffectiveStatus(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); got != kho.StatusRevoked {
		t.Errorf("revoked stays revoked: %s", got)
	}
}

func FuzzParseDepositMetadata(f *testing.F) {
	f.Add([]byte(goodMeta))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"type":"GKS","name":"x","issued_on":"2024-01-01","media_type":"text/plain"}`))
	f.Add([]byte(`{"dossier_code":"A-000101-0000"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kho.ParseDepositMetadata(b)
		if err != nil {
			if c := kho.ErrorCode(err); c != kho.EINVALID && c != kho.ETOOLARGE {
				t.Fatalf("error code %s: %v", c, err)
			}
			return
		}
		// What is accepted is valid, and its result code is well formed.
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted metadata fails Validate: %v", err)
		}
		if m.ResultNo > 0 && !strings.HasPrefix(m.DossierCode.ResultCode(m.ResultNo), string(m.DossierCode)+"-KQ") {
			t.Fatal("result code malformed")
		}
	})
}
