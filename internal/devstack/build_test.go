package devstack

import "testing"

// The build's progress line says its phase from what go prints.
func TestBuildPhase(t *testing.T) {
	plan := buildPlan{mainPkg: "kho/internal/tools/vaultserver", packages: 4}
	tests := []struct{ log, want string }{
		{"", "resolving modules"},
		{"go: downloading github.com/a/b v1.0.0\ngo: downloading github.com/c/d v1.2.0\n", "downloading modules (2 so far)"},
		{"go: downloading github.com/a/b v1.0.0\ngithub.com/a/b\ngithub.com/a/b/c\n", "compiling 2 of 4 packages"},
		{"github.com/a/b\ngithub.com/a/b/c\ngithub.com/c/d\nkho/internal/tools/vaultserver\n", "linking"},
		{"# get https://example.invalid/x/@v/v1.0.0.zip\n# get https://example.invalid/x/@v/v1.0.0.zip: 200 OK (0.1s)\n", "downloading modules (1 so far)"},
	}
	for _, tt := range tests {
		if got := phase(tt.log, plan); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.log, got, tt.want)
		}
	}
	if got := phase("a/b\nc/d\n", buildPlan{}); got != "compiling (2 packages so far)" {
		t.Errorf("without a total: %q", got)
	}
}
