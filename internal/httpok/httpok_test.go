package httpok_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"kho/internal/httpok"
)

func TestGet(t *testing.T) {
	code := http.StatusOK
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
	defer ts.Close()
	ctx := context.Background()
	if !httpok.Get(ctx, ts.Client(), ts.URL) {
		t.Fatal("a 200 is not OK")
	}
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
