package tests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeEnvironment keeps the README's environment tables true: every
// variable they name is read by the code, and every variable the binaries
// read through getenv is in the README.
func TestReadmeEnvironment(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, dir := range []string{"cmd", "internal", "pkg"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			src.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	code := src.String()

	// Names in the README's table rows: `NAME` in the first column.
	row := regexp.MustCompile("(?m)^\\| (`[A-Z][A-Z0-9_]+`(?:[ ,/]+`[A-Z][A-Z0-9_]+`)*) \\|")
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			documented[n[1]] = true
		}
	}
	if len(documented) < 20 {
		t.Fatalf("found only %d variables in the README's tables: %v", len(documented), documented)
	}
	for n := range documented {
		if !strings.Contains(code, `"`+n+`"`) {
			t.Errorf("README documents %s but no code reads it", n)
		}
	}
	// Every getenv("NAME") of the binaries and libraries is documented
	// (the rebalancer's own ones in its paragraph).
	read := regexp.MustCompile(`getenv\("([A-Z][A-Z0-9_]+)"\)`)
	for _, m := range read.FindAllStringSubmatch(code, -1) {
		if !strings.Contains(string(readme), "`"+m[1]+"`") {
			t.Errorf("the code reads %s but the README does not name it", m[1])
		}
	}
}
