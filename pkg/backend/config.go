package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/ids"
)

// Backend types of backends.json.
const (
	TypeClaudeCLI    = "claude-cli"
	TypeAnthropicAPI = "anthropic-api"
)

// DefaultBackendsPath is the backends file read when BACKENDS_CONFIG is unset.
const DefaultBackendsPath = "config/backends.json"

var (
	// ErrNoBackendsFile means the backends file does not exist. The file is
	// optional: the gateway then uses the defaults.
	ErrNoBackendsFile = errors.New("backend: no backends file")
	// ErrInvalidConfig is wrapped by every other error of LoadBackends and by
	// the constructors' errors for options out of range.
	ErrInvalidConfig = errors.New("backend: invalid backends config")
)

// ConfigError lists every problem found in a backends file. errors.Is(err,
// ErrInvalidConfig) holds for it.
type ConfigError struct {
	// Source is the file.
	Source string
	// Problems are "json.path: message" strings, in file order.
	Problems []string
}

// Error names the file and lists the problems, one per line.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s %s:\n  %s", ErrInvalidConfig, e.Source, strings.Join(e.Problems, "\n  "))
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// BackendsConfig is config/backends.json, in the seeds' format.
type BackendsConfig struct {
	// Backends are the configured backends: claude-cli ones linked to a
	// subscription by accountId, at most one anthropic-api (the fallback).
	Backends []BackendConfig `json:"backends"`
}

// BackendConfig is one backend of backends.json.
type BackendConfig struct {
	// Name identifies the backend: 1 to 64 of A-Z a-z 0-9 _ . -, unique.
	Name string `json:"name"`
	// Type is claude-cli or anthropic-api.
	Type string `json:"type"`
	// ConfigDir (claude-cli, optional) is the Claude Code config dir:
	// absolute or ~/…, no "..", no NUL; expanded at load time.
	ConfigDir string `json:"configDir,omitempty"`
	// AccountID (claude-cli, required) is the id of the subscription in
	// auth-pool.json this backend serves.
	AccountID string `json:"accountId,omitempty"`
	// MaxConcurrent caps the turns running at once, ≥ 1. Default 10.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
	// MaxQueue caps the turns waiting for a slot. Default (0) 4 ×
	// maxConcurrent; -1 refuses at once when every slot is busy.
	MaxQueue int `json:"maxQueue,omitempty"`
	// TimeoutSeconds bounds one turn. Default 600.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// SupportsTools on the anthropic-api backend sends it the requests the
	// CLI cannot serve (tools, tool blocks, images, documents), passed
	// through. On a claude-cli backend it changes nothing: the CLI runs
	// sandboxed with no tools (--tools ""), whatever this says.
	SupportsTools bool `json:"supportsTools,omitempty"`
	// BaseURL (anthropic-api) is the API's base URL. Default
	// https://api.anthropic.com.
	BaseURL string `json:"baseUrl,omitempty"`
	// Model (anthropic-api) answers requests that name no model. Default
	// claude-sonnet-4-5.
	Model string `json:"model,omitempty"`
}

// Timeout is TimeoutSeconds as a duration (0 when unset: the default).
func (b BackendConfig) Timeout() time.Duration { return time.Duration(b.TimeoutSeconds) * time.Second }

// CLIOptions are the options of the claude-cli backend b describes, running
// bin (CLAUDE_BIN).
func (b BackendConfig) CLIOptions(bin string) CLIOptions {
	return CLIOptions{Name: b.Name, Bin: bin, MaxConcurrent: b.MaxConcurrent, MaxQueue: b.MaxQueue, Timeout: b.Timeout()}
}

// APIOptions are the options of the anthropic-api backend b describes, with
// apiKey (ANTHROPIC_API_KEY).
func (b BackendConfig) APIOptions(apiKey string) APIOptions {
	return APIOptions{Name: b.Name, BaseURL: b.BaseURL, APIKey: apiKey, Model: b.Model,
		MaxConcurrent: b.MaxConcurrent, MaxQueue: b.MaxQueue, Timeout: b.Timeout()}
}

// ForAccount returns the claude-cli backend of subscription id.
func (c *BackendsConfig) ForAccount(id string) (BackendConfig, bool) {
	for _, b := range c.Backends {
		if b.Type == TypeClaudeCLI && b.AccountID == id {
			return b, true
		}
	}
	return BackendConfig{}, false
}

// Fallback returns the anthropic-api backend, if one is configured.
func (c *BackendsConfig) Fallback() (BackendConfig, bool) {
	for _, b := range c.Backends {
		if b.Type == TypeAnthropicAPI {
			return b, true
		}
	}
	return BackendConfig{}, false
}

// accountPattern is the shape of a subscription id (as in auth-pool.json).
var accountPattern = ids.Name

// maxBackendsFile bounds the file: a real one is a few kilobytes.
const maxBackendsFile = 1 << 20

// LoadBackends reads and validates the backends file at path: strict
// decoding (unknown keys are an error), every problem listed with its JSON
// path in a *ConfigError, defaults applied, "~/" expanded in configDir. A
// missing file yields an error wrapping ErrNoBackendsFile.
func LoadBackends(path string) (*BackendsConfig, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoBackendsFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBackendsFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrInvalidConfig, path, err)
	}
	if len(data) > maxBackendsFile {
		return nil, &ConfigError{Source: path, Problems: []string{fmt.Sprintf("file is larger than %d bytes", maxBackendsFile)}}
	}
	var cfg BackendsConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, &ConfigError{Source: path, Problems: []string{strings.TrimPrefix(err.Error(), "json: ")}}
	}
	if dec.More() {
		return nil, &ConfigError{Source: path, Problems: []string{"unexpected data after the JSON object"}}
	}
	if ps := cfg.validate(); len(ps) > 0 {
		return nil, &ConfigError{Source: path, Problems: ps}
	}
	return &cfg, nil
}

// validate applies the defaults, checks every backend and expands configDir.
func (c *BackendsConfig) validate() []string {
	var ps []string
	add := func(path, format string, args ...any) { ps = append(ps, path+": "+fmt.Sprintf(format, args...)) }
	if len(c.Backends) == 0 {
		add("backends", "want at least one backend")
	}
	names, accounts, fallback := map[string]int{}, map[string]int{}, -1
	for i := range c.Backends {
		b := &c.Backends[i]
		p := fmt.Sprintf("backends[%d]", i)
		if !namePattern.MatchString(b.Name) {
			add(p+".name", "want 1 to 64 of A-Z a-z 0-9 _ . -, got %q", excerpt(b.Name))
		} else if j, dup := names[b.Name]; dup {
			add(p+".name", "duplicate name %q (also backends[%d])", b.Name, j)
		} else {
			names[b.Name] = i
		}
		if b.MaxConcurrent == 0 {
			b.MaxConcurrent = DefaultMaxConcurrent
		}
		if b.MaxConcurrent < 1 {
			add(p+".maxConcurrent", "want 1 or more, got %d", b.MaxConcurrent)
		}
		if b.MaxQueue < -1 {
			add(p+".maxQueue", "want -1 (no queue), 0 (default) or more, got %d", b.MaxQueue)
		}
		if b.TimeoutSeconds < 0 {
			add(p+".timeoutSeconds", "want 1 or more seconds (0: default), got %d", b.TimeoutSeconds)
		}
		switch b.Type {
		case TypeClaudeCLI:
			if !accountPattern.MatchString(b.AccountID) {
				add(p+".accountId", "want the id of a subscription (1 to 64 of A-Z a-z 0-9 _ -), got %q", excerpt(b.AccountID))
			} else if j, dup := accounts[b.AccountID]; dup {
				add(p+".accountId", "subscription %q already has backends[%d]", b.AccountID, j)
			} else {
				accounts[b.AccountID] = i
			}
			if b.ConfigDir != "" {
				if msg := configDirProblem(b.ConfigDir); msg != "" {
					add(p+".configDir", "%s", msg)
				} else if dir, err := expandHome(b.ConfigDir); err != nil {
					add(p+".configDir", "%s", err)
				} else {
					b.ConfigDir = dir
				}
			}
			if b.BaseURL != "" || b.Model != "" {
				add(p, "baseUrl and model are for anthropic-api backends")
			}
		case TypeAnthropicAPI:
			if fallback >= 0 {
				add(p+".type", "only one anthropic-api backend (also backends[%d])", fallback)
			}
			fallback = i
			if b.ConfigDir != "" || b.AccountID != "" {
				add(p, "configDir and accountId are for claude-cli backends")
			}
			if b.BaseURL == "" {
				b.BaseURL = DefaultAnthropicBaseURL
			} else if msg := baseURLProblem(b.BaseURL); msg != "" {
				add(p+".baseUrl", "%s", msg)
			}
			if b.Model == "" {
				b.Model = DefaultAPIModel
			} else if !modelPattern.MatchString(b.Model) {
				add(p+".model", "want an alias or a claude-* name, got %q", excerpt(b.Model))
			}
		default:
			add(p+".type", "want %s or %s, got %q", TypeClaudeCLI, TypeAnthropicAPI, excerpt(b.Type))
		}
	}
	return ps
}

// configDirProblem checks a configDir before "~/" expansion, by the rules of
// auth-pool.json.
func configDirProblem(dir string) string {
	switch {
	case strings.ContainsRune(dir, 0):
		return "must not contain a NUL byte"
	case !filepath.IsAbs(dir) && !strings.HasPrefix(dir, "~/"):
		return fmt.Sprintf("want an absolute path or ~/…, got %q", excerpt(dir))
	}
	for _, elem := range strings.Split(dir, "/") {
		if elem == ".." {
			return "must not contain a .. element"
		}
	}
	return ""
}

// expandHome turns "~/x" into $HOME/x and cleans the path.
func expandHome(dir string) (string, error) {
	rest, ok := strings.CutPrefix(dir, "~/")
	if !ok {
		return filepath.Clean(dir), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		return "", errors.New("cannot expand ~/: no absolute home directory ($HOME)")
	}
	return filepath.Join(home, rest), nil
}
