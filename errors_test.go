package kho_test

import (
	"errors"
	"fmt"
	"testing"

	"kho"
)

func TestErrorCodeAndMessage(t *testing.T) {
	inner := errors.New("dial tcp 127.0.0.1:9000: connection refused")
	wrapped := fmt.Errorf("storage: put: %w", kho.WrapError(kho.EUNAVAILABLE, "object store unavailable", inner))
	tests := []struct {
		name     string
		err      error
		code     string
		message  string
		contains error
	}{
		{"ok/nil", nil, "", "", nil},
		{"ok/plain error is internal with a generic message", inner, kho.EINTERNAL, "an internal error occurred", nil},
		{"ok/kho error through fmt wrapping", wrapped, kho.EUNAVAILABLE, "object store unavailable", inner},
		{"ok/Errorf", kho.Errorf(kho.ENOTFOUND, "document %d not found", 7), kho.ENOTFOUND, "document 7 not found", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kho.ErrorCode(tt.err); got != tt.code {
				t.Errorf("ErrorCode = %q, want %q", got, tt.code)
			}
			if got := kho.ErrorMessage(tt.err); got != tt.message {
				t.Errorf("ErrorMessage = %q, want %q", got, tt.message)
			}
			if tt.contains != nil && !errors.Is(tt.err, tt.contains) {
				t.Errorf("errors.Is lost the cause")
			}
		})
	}
}
