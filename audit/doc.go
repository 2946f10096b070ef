// Package audit will hold the append-only, hash-chained audit trail, its
// Vault-signed checkpoints, the queries citizens and security officers run,
// and the offline verifier. It imports the root package and is handed a
// *postgres.DB by cmd/.
package audit
