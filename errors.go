package kho

import (
	"errors"
	"fmt"
)

// Error codes. They are the only error classification the API maps to HTTP
// statuses; packages return them through *Error and callers match them with
// ErrorCode, never by comparing strings.
const (
	EINVALID      = "invalid"      // the request is malformed or breaks a rule
	EUNAUTHORIZED = "unauthorized" // no, or no valid, credentials
	EFORBIDDEN    = "forbidden"    // authenticated, but not allowed
	ENOTFOUND     = "not_found"    // no such thing (or not visible to the caller)
	ECONFLICT     = "conflict"     // the state does not allow the change
	ETOOLARGE     = "too_large"    // the input is over a configured limit
	ETOOMANY      = "rate_limited" // the caller sent too many requests; retry later
	EUNAVAILABLE  = "unavailable"  // a dependency did not answer; retry later
	EINTEGRITY    = "integrity"    // stored data failed a cryptographic check
	EINTERNAL     = "internal"     // a bug or an unexpected failure
)

// Error is an error with a code from the list above and a message that is safe
// to show to the caller: it never holds personal data or document contents.
// The wrapped Err carries the detail for logs.
type Error struct {
	Code    string
	Message string
	Err     error
	// Reason is an optional stable, machine-readable refusal reason
	// (consent_required, consent_revoked, ...), shown as "reason" in
	// problem+json so clients can act on it.
	Reason string
	// Fields names the fields of a request that are wrong, for EINVALID
	// (problem+json's "errors" member).
	Fields []FieldError
	// Dependency names the server that failed, for EUNAVAILABLE: "minio",
	// "vault" or "postgresql" (problem+json's "dependency" member).
	Dependency string
}

// Dependencies kho answers 503 for.
const (
	DependencyMinIO      = "minio"
	DependencyVault      = "vault"
	DependencyPostgreSQL = "postgresql"
)

// Unavailable returns an EUNAVAILABLE error naming the dependency that
// failed.
func Unavailable(dependency, message string, err error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: message, Err: err, Dependency: dependency}
}

// ErrorDependency returns the dependency the first *Error in err's chain
// that names one names, or "".
func ErrorDependency(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Dependency != "" {
			return e.Dependency
		}
		err = e.Err
	}
	return ""
}

// Error returns the safe message followed by the wrapped detail.
func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Message
	case e.Message == "":
		return e.Err.Error()
	default:
		return e.Message + ": " + e.Err.Error()
	}
}

// Unwrap exposes the wrapped error to errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted safe message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with the given code and safe message around err.
func WrapError(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the outermost *Error in err's chain,
// EINTERNAL for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return EINTERNAL
}

// Refusal returns an *Error with a stable reason code besides its message.
func Refusal(code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ErrorReason returns the stable reason of the outermost *Error that has one.
func ErrorReason(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Reason != "" {
			return e.Reason
		}
		err = e.Err
	}
	return ""
}

// ErrorMessage returns the safe message of the outermost *Error in err's
// chain, or a generic message for errors that carry none: details of
// unexpected errors never reach the caller.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "an internal error occurred"
}
