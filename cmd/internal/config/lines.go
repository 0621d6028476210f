package config

import (
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// written is a key as written in a file: its line and the kind of its
// value (unstable.Table for a table header).
type written struct {
	line int
	kind unstable.Kind
}

// scanKeys maps every key written in data to where it is and what kind of
// value it has, with array-of-tables elements numbered as validate names
// them: "provider[0].client_id". Table headers map as "provider[0]" and
// "daemon"; keys inside inline tables ("daemon = {state_dir = ...}") and
// inline arrays of tables ("webhook = [{url = ...}]") are named as if
// written in full. A document that does not parse gives what was read up
// to the error (the decoder reports the error itself).
func scanKeys(data []byte) map[string]written {
	out := map[string]written{}
	p := unstable.Parser{}
	p.Reset(data)
	counts := map[string]int{}
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts := keyParts(e.Key())
			name := strings.Join(parts, ".")
			if e.Kind == unstable.ArrayTable {
				n := counts[name]
				counts[name] = n + 1
				name = fmt.Sprintf("%s[%d]", name, n)
			} else if len(parts) > 1 {
				// A sub-table of the last array element: [notify.smtp] stays as is.
				if n, ok := counts[parts[0]]; ok {
					name = fmt.Sprintf("%s[%d].%s", parts[0], n-1, strings.Join(parts[1:], "."))
				}
			}
			table = name
			out[name] = written{lineOf(&p, e), unstable.Table}
		case unstable.KeyValue:
			keyValue(&p, out, table, e)
		}
	}
	return out
}

// keyValue records a key = value expression below prefix, and the keys of
// an inline table or an array of inline tables it holds.
func keyValue(p *unstable.Parser, out map[string]written, prefix string, e *unstable.Node) {
	k := strings.Join(keyParts(e.Key()), ".")
	if prefix != "" {
		k = prefix + "." + k
	}
	line := lineOf(p, e)
	v := e.Value()
	if v == nil {
		return
	}
	out[k] = written{line, v.Kind}
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				keyValue(p, out, k, c)
			}
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			c := it.Node()
			if c.Kind != unstable.InlineTable {
				continue
			}
			elem := fmt.Sprintf("%s[%d]", k, i)
			out[elem] = written{line, unstable.InlineTable}
			for jt := c.Children(); jt.Next(); {
				if kv := jt.Node(); kv.Kind == unstable.KeyValue {
					keyValue(p, out, elem, kv)
				}
			}
			i++
		}
	}
}

// keyAtLine returns the key written on a line, for errors that carry only
// a position.
func keyAtLine(keys map[string]written, line int) string {
	best := ""
	for k, w := range keys {
		// The longest key on the line is the innermost one (an inline
		// table's key is written on the line of its parent).
		if w.line == line && w.kind != unstable.Table && len(k) > len(best) {
			best = k
		}
	}
	return best
}

// lineOfKey returns the line of key, or of the nearest table that holds
// it when the key itself is not written (a missing required key); 0 when
// nothing of it is written.
func lineOfKey(keys map[string]written, key string) int {
	for key != "" {
		if w, ok := keys[key]; ok {
			return w.line
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func lineOf(p *unstable.Parser, n *unstable.Node) (line int) {
	defer func() {
		if recover() != nil {
			line = 0
		}
	}()
	it := n.Key()
	if it.Next() {
		k := it.Node()
		if k.Raw.Length > 0 {
			return p.Shape(k.Raw).Start.Line
		}
		return p.Shape(p.Range(k.Data)).Start.Line
	}
	return 0
}
