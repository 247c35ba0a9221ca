package lua

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// luaName is the codes.lua name of a Go constant: CodeStaleEpoch is
// CODE_STALE_EPOCH.
func luaName(goName string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range goName {
		if unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
		prev = r
	}
	return b.String()
}

// goCodes reads the Code* constants of codes.go from its source, so that a
// constant added there without its Lua twin fails the test below.
func goCodes(t *testing.T) map[string]int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					t.Fatalf("%s must be an integer literal", name.Name)
				}
				n, _ := strconv.Atoi(lit.Value)
				out[luaName(name.Name)] = n
			}
		}
	}
	return out
}

var luaCode = regexp.MustCompile(`(?m)^local (CODE_[A-Z_]+) = (\d+)$`)

// The reply codes have one list of names for Lua and Go: codes.lua and the
// constants of codes.go name the same codes with the same values.
func TestReplyCodesMatchLua(t *testing.T) {
	goc := goCodes(t)
	luac := map[string]int{}
	values := map[int]string{}
	for _, m := range luaCode.FindAllStringSubmatch(codesSrc, -1) {
		n, _ := strconv.Atoi(m[2])
		luac[m[1]] = n
		if other, dup := values[n]; dup {
			t.Errorf("codes.lua gives %s and %s the same value %d", other, m[1], n)
		}
		values[n] = m[1]
	}
	if len(luac) == 0 || len(goc) == 0 {
		t.Fatalf("found %d Lua and %d Go codes", len(luac), len(goc))
	}
	for name, v := range goc {
		if lv, ok := luac[name]; !ok || lv != v {
			t.Errorf("Go %s = %d; codes.lua has %d (present: %v)", name, v, lv, ok)
		}
	}
	for name, v := range luac {
		if _, ok := goc[name]; !ok {
			t.Errorf("codes.lua %s = %d has no Go constant", name, v)
		}
	}
	if CodeStaleEpoch != goc["CODE_STALE_EPOCH"] { // the parse reads the file that is compiled
		t.Fatal("codes.go parsed wrongly")
	}
}

// No script answers with a bare number where a code belongs.
func TestScriptsReturnNamedCodes(t *testing.T) {
	bare := regexp.MustCompile(`return \{ *-?\d`)
	for name, src := range map[string]string{"sync": syncSrc, "allocate": allocateSrc, "settle": settleSrc,
		"mark": markSrc, "release": releaseSrc, "maintain": maintainSrc, "rebalance": rebalanceSrc,
		"status": statusSrc, "turn": turnSrc, "gcra": gcraSrc, "promote": promoteSrc} {
		if loc := bare.FindStringIndex(src); loc != nil {
			t.Errorf("%s.lua answers a bare code: %q", name, src[loc[0]:min(len(src), loc[1]+20)])
		}
	}
}
