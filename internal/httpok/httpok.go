// Package httpok asks a health endpoint whether it answers 200: khod's
// MinIO liveness probe and the dev cluster's fronts and checks share it.
package httpok

import (
	"context"
	"net/http"
)

// Get reports whether a GET of url through c answers 200 within ctx, and
// the server does not say it is still starting: a MinIO node answers its
// liveness and readiness checks 200 as soon as it listens, and says that
// its object layer is not loaded yet only in X-Minio-Server-Status. (Its
// accounts and buckets' settings load after that, unseen by those checks;
// khod tries a call such a node refuses again, storage/retry.go.)
func Get(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Minio-Server-Status") == ""
}
