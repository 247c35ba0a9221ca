package backend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadBackendsShippedFile(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfg, err := LoadBackends("../../config/backends.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"sub1", "sub2", "sub3"} {
		b, ok := cfg.ForAccount(id)
		if !ok || b.Type != TypeClaudeCLI || b.ConfigDir != filepath.Join(home, ".claude-"+id) || b.MaxConcurrent != 10 || !b.SupportsTools {
			t.Errorf("ForAccount(%s) = %+v, %v", id, b, ok)
		}
	}
	fb, ok := cfg.Fallback()
	if !ok || fb.BaseURL != DefaultAnthropicBaseURL || fb.Model != "claude-sonnet-4-5" || fb.MaxConcurrent != DefaultMaxConcurrent {
		t.Errorf("Fallback() = %+v, %v", fb, ok)
	}
	if _, ok := cfg.ForAccount("sub4"); ok {
		t.Error("ForAccount(sub4) found a backend")
	}

	// The options the gateway builds from it make working backends.
	sub1, _ := cfg.ForAccount("sub1")
	if _, err := NewClaudeCLI(sub1.CLIOptions("claude")); err != nil {
		t.Errorf("NewClaudeCLI(sub1): %v", err)
	}
	if _, err := NewAnthropicAPI(fb.APIOptions("sk-ant-api03-x")); err != nil {
		t.Errorf("NewAnthropicAPI(fallback): %v", err)
	}
}

func TestLoadBackendsMissingFile(t *testing.T) {
	_, err := LoadBackends(filepath.Join(t.TempDir(), "backends.json"))
	if !errors.Is(err, ErrNoBackendsFile) || errors.Is(err, ErrInvalidConfig) {
		t.Errorf("LoadBackends(missing) = %v, want ErrNoBackendsFile only", err)
	}
}

func TestLoadBackendsDefaults(t *testing.T) {
	cfg := loadString(t, `{"backends":[{"name":"a","type":"claude-cli","accountId":"sub1","timeoutSeconds":30,"maxQueue":-1},
		{"name":"f","type":"anthropic-api"}]}`)
	a := cfg.Backends[0]
	if a.MaxConcurrent != DefaultMaxConcurrent || a.ConfigDir != "" || a.Timeout() != 30*time.Second {
		t.Errorf("claude-cli defaults: %+v", a)
	}
	if o := a.CLIOptions("/bin/claude"); o.Bin != "/bin/claude" || o.MaxQueue != -1 || o.Timeout != 30*time.Second || o.Name != "a" {
		t.Errorf("CLIOptions = %+v", o)
	}
	if f := cfg.Backends[1]; f.BaseURL != DefaultAnthropicBaseURL || f.Model != DefaultAPIModel {
		t.Errorf("anthropic-api defaults: %+v", f)
	}
}

func loadString(t *testing.T, content string) *BackendsConfig {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backends.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadBackends(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadBackendsRejects(t *testing.T) {
	cli := func(extra string) string {
		return `{"backends":[{"name":"a","type":"claude-cli","accountId":"sub1"` + extra + `}]}`
	}
	for _, tc := range []struct {
		name, content string
		want          []string // each must be in the error
	}{
		{"not json", `{"backends":[`, []string{"unexpected EOF"}},
		{"unknown key", cli(`,"maxConcurent":3`), []string{`unknown field "maxConcurent"`}},
		{"trailing data", cli("") + `{}`, []string{"after the JSON object"}},
		{"no backends", `{"backends":[]}`, []string{"backends: want at least one"}},
		{"bad type", `{"backends":[{"name":"a","type":"openai"}]}`, []string{"backends[0].type"}},
		{"bad name", `{"backends":[{"name":"a b","type":"anthropic-api"}]}`, []string{"backends[0].name"}},
		{"duplicate name", `{"backends":[{"name":"a","type":"claude-cli","accountId":"s1"},{"name":"a","type":"claude-cli","accountId":"s2"}]}`, []string{"backends[1].name: duplicate"}},
		{"missing accountId", `{"backends":[{"name":"a","type":"claude-cli"}]}`, []string{"backends[0].accountId"}},
		{"bad accountId", cli(`,"accountId":"sub 1"`), []string{"backends[0].accountId"}},
		{"duplicate accountId", `{"backends":[{"name":"a","type":"claude-cli","accountId":"s1"},{"name":"b","type":"claude-cli","accountId":"s1"}]}`, []string{"backends[1].accountId"}},
		{"relative configDir", cli(`,"configDir":".claude-sub1"`), []string{"backends[0].configDir: want an absolute path"}},
		{"configDir with ..", cli(`,"configDir":"~/../root/.claude"`), []string{"backends[0].configDir: must not contain a .."}},
		{"configDir with NUL", cli(`,"configDir":"/a\u0000b"`), []string{"backends[0].configDir: must not contain a NUL"}},
		{"maxConcurrent 0 is the default, -1 is not", cli(`,"maxConcurrent":-1`), []string{"backends[0].maxConcurrent"}},
		{"maxQueue", cli(`,"maxQueue":-2`), []string{"backends[0].maxQueue"}},
		{"timeout", cli(`,"timeoutSeconds":-5`), []string{"backends[0].timeoutSeconds"}},
		{"baseUrl on claude-cli", cli(`,"baseUrl":"https://example.com"`), []string{"backends[0]: baseUrl and model"}},
		{"two fallbacks", `{"backends":[{"name":"a","type":"anthropic-api"},{"name":"b","type":"anthropic-api"}]}`, []string{"backends[1].type: only one"}},
		{"plain http fallback", `{"backends":[{"name":"a","type":"anthropic-api","baseUrl":"http://example.com"}]}`, []string{"backends[0].baseUrl"}},
		{"fallback with accountId", `{"backends":[{"name":"a","type":"anthropic-api","accountId":"sub1"}]}`, []string{"backends[0]: configDir and accountId"}},
		{"every problem listed", `{"backends":[{"name":"","type":"claude-cli"},{"name":"b","type":"x"}]}`,
			[]string{"backends[0].name", "backends[0].accountId", "backends[1].type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "backends.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadBackends(path)
			var ce *ConfigError
			if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ce) {
				t.Fatalf("LoadBackends = %v, want a *ConfigError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
