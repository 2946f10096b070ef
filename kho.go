// Package kho is the domain of the kho warehouse: the people and agencies that
// use it, the identifiers they are known by, and the small interfaces the
// adapters (vault, storage, postgres) and the services (consent, policies,
// audit) meet at. It imports nothing of the project, so every other package
// can import it.
package kho

import "context"

// HealthChecker is met by every adapter of an outside server. Readiness probes
// call it with a short deadline; a nil error means the server answered.
type HealthChecker interface {
	// Health reports whether the server can serve requests now.
	// Errors carry code EUNAVAILABLE.
	Health(ctx context.Context) error
}
