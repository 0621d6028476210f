package hydratest

import (
	"os"
	"path/filepath"
	"testing"
)

// outcomeTB records how a helper ended the test instead of ending it.
type outcomeTB struct {
	testing.TB
	outcomes []string
}

func (o *outcomeTB) Helper()               {}
func (o *outcomeTB) Fatal(args ...any)     { o.outcomes = append(o.outcomes, "fatal") }
func (o *outcomeTB) Fatalf(string, ...any) { o.outcomes = append(o.outcomes, "fatal") }
func (o *outcomeTB) Skip(args ...any)      { o.outcomes = append(o.outcomes, "skip") }
func (o *outcomeTB) Skipf(string, ...any)  { o.outcomes = append(o.outcomes, "skip") }
func (o *outcomeTB) first() string {
	if len(o.outcomes) == 0 {
		return "none"
	}
	return o.outcomes[0]
}

func TestBinary(t *testing.T) {
	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(repo, "a", "b")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)

	for _, tc := range []struct {
		name, env, strict string
		want              string
	}{
		{"missing, developer", "", "", "skip"},
		{"missing, CI", "", "1", "fatal"},
		{"env names a missing file", filepath.Join(repo, "nope"), "", "fatal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TAGWATCH_HYDRA", tc.env)
			t.Setenv("CI_STRICT", tc.strict)
			o := &outcomeTB{TB: t}
			Binary(o)
			if got := o.first(); got != tc.want {
				t.Errorf("Binary() ended the test with %s, want %s", got, tc.want)
			}
		})
	}

	// Found by walking up to the repository root.
	bin := filepath.Join(repo, ".ci", "bin", "hydra")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TAGWATCH_HYDRA", "")
	t.Setenv("CI_STRICT", "1")
	o := &outcomeTB{TB: t}
	if got := Binary(o); got != bin || len(o.outcomes) != 0 {
		t.Errorf("Binary() = %q (%v), want %q", got, o.outcomes, bin)
	}
}
