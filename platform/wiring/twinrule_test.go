package wiring_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// reconcilePackages hold reconcile logic: the simulator drives them in
// virtual time, so they may take time only from the injected clock.
var reconcilePackages = []string{
	"../controllers/job", "../controllers/pe", "../controllers/pod", "../controllers/hostpool",
	"../conductors/jobconductor", "../conductors/podconductor", "../conductors/regionconductor", "../conductors/broker", "../region",
	"../coordinator", "../conditions", "../app", "../render", ".",
}

// forbidden are the calls that read the wall clock or block.
var forbidden = map[string]map[string]string{
	"time": {"Now": "read the injected clock", "Since": "use clock.Since", "Until": "use the injected clock",
		"Sleep": "return RequeueAfter", "After": "return RequeueAfter", "Tick": "return RequeueAfter",
		"NewTimer": "return RequeueAfter", "NewTicker": "return RequeueAfter", "AfterFunc": "return RequeueAfter"},
	"k8s.io/apimachinery/pkg/apis/meta/v1": {"Now": "stamp times from the injected clock", "NowMicro": "stamp times from the injected clock"},
}

// violations lists every go statement, channel operation, select and
// forbidden call in the non-test Go files of dir.
func violations(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		imports := map[string]string{} // local name -> path
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := filepath.Base(path)
			if path == "k8s.io/apimachinery/pkg/apis/meta/v1" {
				name = "v1"
			}
			if imp.Name != nil {
				name = imp.Name.Name
			}
			imports[name] = path
		}
		ast.Inspect(file, func(n ast.Node) bool {
			pos := func() string { return fset.Position(n.Pos()).String() }
			switch x := n.(type) {
			case *ast.GoStmt:
				out = append(out, pos()+": go statement")
			case *ast.SelectStmt:
				out = append(out, pos()+": select")
			case *ast.SendStmt:
				out = append(out, pos()+": channel send")
			case *ast.UnaryExpr:
				if x.Op == token.ARROW {
					out = append(out, pos()+": channel receive")
				}
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok {
					if why, bad := forbidden[imports[id.Name]][x.Sel.Name]; bad {
						out = append(out, pos()+": "+id.Name+"."+x.Sel.Name+" ("+why+")")
					}
				}
			}
			return true
		})
	}
	return out
}

// TestTwinRule fails when reconcile logic uses goroutines, channels, sleeps
// or the wall clock: the simulator could not drive it deterministically.
func TestTwinRule(t *testing.T) {
	for _, dir := range reconcilePackages {
		for _, v := range violations(t, dir) {
			t.Errorf("twin rule: %s", v)
		}
	}
}

// TestTwinRuleCatchesViolations proves the checker can fail.
func TestTwinRuleCatchesViolations(t *testing.T) {
	dir := t.TempDir()
	src := `package bad
import (
	"time"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)
func f(c chan int) {
	_ = time.Now()
	time.Sleep(time.Second)
	_ = metav1.Now()
	go f(c)
	c <- 1
	<-c
}
`
	if err := os.WriteFile(filepath.Join(dir, "bad.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := violations(t, dir)
	if len(got) != 6 {
		t.Fatalf("found %d violations, want 6: %v", len(got), got)
	}
}
