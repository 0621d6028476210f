package worker_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImports: nothing under worker/ links vault/renew (tests included:
// renewal is wired by cmd/), and no package under worker/ names
// *vault.Tx outside its tests: the worker reaches the vault only through
// worker.Store.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %d packages, want the real list: %q", len(deps), deps)
	}
	for _, d := range deps {
		if d == "tagwatch/vault/renew" {
			t.Errorf("a package under worker/ depends on %s", d)
		}
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Tx" {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "vault" {
					t.Errorf("%s: uses vault.Tx; declare what the worker needs in worker.Store", fset.Position(sel.Pos()))
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
