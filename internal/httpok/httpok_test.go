package httpok_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"kho/internal/httpok"
)

func TestGet(t *testing.T) {
	code, status := http.StatusOK, ""
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if status != "" {
			w.Header().Set("X-Minio-Server-Status", status)
		}
		w.WriteHeader(code)
	}))
	defer ts.Close()
	ctx := context.Background()
	if !httpok.Get(ctx, ts.Client(), ts.URL) {
		t.Fatal("a 200 is not OK")
	}
	status = "offline" // a MinIO node that listens but has not loaded its object layer
	if httpok.Get(ctx, ts.Client(), ts.URL) {
		t.Fatal("a 200 from a server still starting is OK")
	}
	status = ""
	code = http.StatusServiceUnavailable
	if httpok.Get(ctx, ts.Client(), ts.URL) {
		t.Fatal("a 503 is OK")
	}
	ts.Close()
	if httpok.Get(ctx, ts.Client(), ts.URL) {
		t.Fatal("a closed server is OK")
	}
	if httpok.Get(ctx, ts.Client(), "://bad") {
		t.Fatal("a bad URL is OK")
	}
}
