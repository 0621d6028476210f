package cliflag

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		cfg  string
	}{
		{[]string{"w1"}, []string{"w1"}, ""},
		{[]string{"w1", "-config", "f"}, []string{"w1"}, "f"},
		{[]string{"-config", "f", "w1", "w2"}, []string{"w1", "w2"}, "f"},
		{[]string{"-config", "f", "--", "-w1"}, []string{"-w1"}, "f"},
		{[]string{"w1", "--", "-config", "g"}, []string{"w1", "-config", "g"}, ""},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg := fs.String("config", "", "")
		pos, err := ParseInterspersed(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.pos) || *cfg != tt.cfg {
			t.Errorf("ParseInterspersed(%q) = %q, config %q, %v; want %q, config %q", tt.args, pos, *cfg, err, tt.pos, tt.cfg)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := ParseInterspersed(fs, []string{"w1", "-nosuch"}); err == nil {
		t.Errorf("ParseInterspersed with an unknown flag = nil error")
	}
}
