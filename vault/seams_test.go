package vault_test

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

// txUses returns where the non-test Go files under dir name vault.Tx, and
// where they call a method named Update or View on anything (a raw
// transaction of their own). *vault.Tx is only ever handed to a closure
// passed to DB.View or DB.Update, so code that never names vault.Tx
// and opens no such closure uses no *vault.Tx-taking API.
func txUses(t *testing.T, dir string) (named, opened []string) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "vault" && n.Sel.Name == "Tx" {
					named = append(named, fset.Position(n.Pos()).String())
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Update" || sel.Sel.Name == "View") && len(n.Args) == 1 {
					if fl, ok := n.Args[0].(*ast.FuncLit); ok && len(fl.Type.Params.List) == 1 {
						opened = append(opened, fset.Position(n.Pos()).String())
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return named, opened
}

// TestStoreSeams holds the shape issue 11 gave the code: the worker and
// the notifier reach the store only through the small interfaces they
// declare (no *vault.Tx), the doors open no transaction of their own,
// and nothing under worker/, its tests included, depends on vault/renew
// (renewal is wired by cmd/).
func TestStoreSeams(t *testing.T) {
	for _, dir := range []string{"../worker", "../notify", "../vault/enroll", "../vault/renew"} {
		named, opened := txUses(t, dir)
		for _, at := range append(named, opened...) {
			t.Errorf("%s: uses a *vault.Tx-taking API; call a *vault.DB method (vault.Store) instead", at)
		}
	}
	// The doors: at most 3 read-write transactions of their own (issue
	// 11's bar); today none. (cmd/tagwatch-bench is a load generator, not
	// a door: it seeds 100,000 grants in batches of its own.)
	for _, dir := range []string{"../cmd/tagwatchd", "../cmd/tagwatchctl", "../cmd/internal"} {
		named, opened := txUses(t, dir)
		if len(opened) > 3 {
			t.Errorf("%s opens %d transactions of its own, want at most 3: %v", dir, len(opened), opened)
		}
		for _, at := range named {
			t.Errorf("%s: names vault.Tx; call a *vault.DB method instead", at)
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "../worker/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps ./worker/... gave %d packages, want the real list", len(deps))
	}
	for _, d := range deps {
		if d == "tagwatch/vault/renew" {
			t.Errorf("a package under worker/ depends on %s", d)
		}
	}
}
