package config

import (
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyLines maps every key written in data to the line it is on, with
// array-of-tables elements numbered as validate names them:
// "provider[0].client_id". Table headers map as "provider[0]" and "daemon".
func keyLines(data []byte) map[string]int {
	out := map[string]int{}
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
			out[name] = lineOf(&p, e)
		case unstable.KeyValue:
			k := strings.Join(keyParts(e.Key()), ".")
			if table != "" {
				k = table + "." + k
			}
			out[k] = lineOf(&p, e)
		}
	}
	return out
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
