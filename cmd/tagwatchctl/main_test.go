package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-version"}, 0, "tagwatchctl "},
		{nil, 2, "no command given"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if code := run(c.args, &out, &out); code != c.code || !strings.Contains(out.String(), c.out) {
			t.Errorf("run(%q) = %d %q, want %d containing %q", c.args, code, out.String(), c.code, c.out)
		}
	}
}
