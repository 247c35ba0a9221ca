package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteSection: sections are created, replaced in place, and never touch
// each other or the text around them.
func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	steps := []struct{ name, body string }{
		{"pool", "pool v1"},
		{"gateway", "gateway v1\n"},
		{"pool", "pool v2"},
	}
	for _, s := range steps {
		if err := WriteSection(path, s.name, s.body); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, "# Benchmarks\n") {
		t.Errorf("no header:\n%s", got)
	}
	want := "<!-- pool:begin -->\npool v2\n<!-- pool:end -->\n\n<!-- gateway:begin -->\ngateway v1\n<!-- gateway:end -->\n"
	if !strings.HasSuffix(got, want) || strings.Contains(got, "pool v1") {
		t.Errorf("file =\n%s\nwant it to end with\n%s", got, want)
	}
}
