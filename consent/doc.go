// Package consent will hold consent artefacts (grantee, purpose, document
// types, period, use limits, status history), their signed receipts, and the
// decision whether an active consent admits a request. It imports the root
// package and is handed a *postgres.DB by cmd/.
package consent
