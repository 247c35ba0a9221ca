// Package benchdoc writes the sections of BENCHMARKS.md: each benchmark
// command owns one section between <!-- name:begin --> and
// <!-- name:end --> markers and replaces only that, so the commands can be
// rerun in any order.
package benchdoc

import (
	"os"
	"strings"
)

// header starts a new BENCHMARKS.md.
const header = "# Benchmarks\n\nEvery number here is produced by a command in this repository and is a ratio " +
	"against a reference measured in the same run; absolute figures depend on the machine.\n\n"

// Markers returns the begin and end markers of the section name.
func Markers(name string) (begin, end string) {
	return "<!-- " + name + ":begin -->", "<!-- " + name + ":end -->"
}

// WriteSection puts body, wrapped in name's markers, in the Markdown file at
// path: in place of the section's previous text, or appended when the file
// has none (a missing file is created with the header).
func WriteSection(path, name, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	begin, end := Markers(name)
	section := begin + "\n" + strings.TrimSuffix(body, "\n") + "\n" + end
	s := string(old)
	if i, j := strings.Index(s, begin), strings.Index(s, end); i >= 0 && j > i {
		s = s[:i] + section + s[j+len(end):]
	} else {
		if s == "" {
			s = header
		}
		s = strings.TrimRight(s, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
