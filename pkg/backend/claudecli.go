package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/ids"
)

// Defaults of CLIOptions.
const (
	DefaultCLIName       = "claude-cli"
	DefaultCLIBin        = "claude"
	DefaultMaxConcurrent = 10
	DefaultCLITimeout    = 10 * time.Minute
	DefaultKillGrace     = 5 * time.Second
)

// CLIOptions configures a claude-cli backend.
type CLIOptions struct {
	// Name identifies the backend. Default "claude-cli".
	Name string
	// Bin is the CLI executable, a path or a name looked up in PATH.
	// Default "claude" (the gateway passes CLAUDE_BIN).
	Bin string
	// MaxConcurrent caps the CLI processes running at once. Default 10.
	MaxConcurrent int
	// MaxQueue caps the turns waiting for a slot; more are refused with
	// ErrQueueFull at once. 0 means 4 × MaxConcurrent; negative means none.
	MaxQueue int
	// Timeout bounds one turn, queueing excluded. Default 10 minutes.
	Timeout time.Duration
	// KillGrace is the wait between SIGTERM and SIGKILL of a process group
	// that must stop. Default 5 s.
	KillGrace time.Duration
	// ExtraEnv adds KEY=VALUE entries to the CLI's environment, the only
	// variables it gets besides the allow-list (see env). It may not set the
	// variables the backend controls.
	ExtraEnv []string
	// WorkDir is the CLI's working directory: an empty directory the
	// gateway owns, one per subscription, never the gateway's own working
	// directory nor a config dir. Created (mode 0700) when missing; a run
	// refuses one that is not empty. Stable across runs, since the CLI files
	// its sessions (--resume) by working directory. Default
	// <DefaultStateDir>/cli/<Name>.
	WorkDir string
}

// inheritedEnv are the only variables of the gateway's environment the CLI
// inherits (and LC_*): everything else — REDIS_PASSWORD, SENTRY_DSN,
// OTEL_EXPORTER_OTLP_HEADERS, API_KEYS, another subscription's token — stays
// out, whatever new secret an operator adds.
var inheritedEnv = []string{"PATH", "HOME", "LANG", "TZ", "TMPDIR"}

// controlledEnv are set by the backend only, never inherited nor given in
// ExtraEnv: the credentials come from the Target (an ANTHROPIC_API_KEY would
// bill the API instead of the subscription), and background traffic is off.
var controlledEnv = []string{"CLAUDE_CONFIG_DIR", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY",
	"ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"}

// DefaultStateDir is where the gateway keeps the CLI's working directories
// unless told otherwise (AUTHPOOL_STATE_DIR): authpool under the OS temp dir.
func DefaultStateDir() string { return filepath.Join(os.TempDir(), "authpool") }

var (
	namePattern    = ids.Backend
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	// resumePattern is the shape of a CLI session id (a UUID in practice).
	resumePattern = ids.CLISession
	// modelPattern admits aliases and claude-* names, never a leading dash.
	modelPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,127}$`)
)

// maxSystemPrompt keeps --system-prompt under Linux's 128 KiB limit on one
// argument (MAX_ARG_STRLEN).
const maxSystemPrompt = 100_000

// ClaudeCLI runs turns through `claude -p`, one process per turn, under the
// config dir (and token) of the Target.
type ClaudeCLI struct {
	opts CLIOptions
	gate *gate
}

var _ Backend = (*ClaudeCLI)(nil)

// NewClaudeCLI returns a claude-cli backend. Options out of range yield an
// error wrapping ErrInvalidConfig.
func NewClaudeCLI(o CLIOptions) (*ClaudeCLI, error) {
	if o.Name == "" {
		o.Name = DefaultCLIName
	}
	if o.Bin == "" {
		o.Bin = DefaultCLIBin
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultCLITimeout
	}
	if o.KillGrace == 0 {
		o.KillGrace = DefaultKillGrace
	}
	var ps []string
	if !namePattern.MatchString(o.Name) {
		ps = append(ps, "name: want 1 to 64 of A-Z a-z 0-9 _ . -")
	}
	if strings.ContainsRune(o.Bin, 0) {
		ps = append(ps, "bin: must not contain a NUL byte")
	}
	queue, qps := queueSize(o.MaxConcurrent, o.MaxQueue)
	ps = append(ps, qps...)
	if o.Timeout < 0 || o.KillGrace < 0 {
		ps = append(ps, "timeout and killGrace: want durations ≥ 0")
	}
	for i, kv := range o.ExtraEnv {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok || !envNamePattern.MatchString(k) || strings.ContainsRune(kv, 0):
			ps = append(ps, fmt.Sprintf("extraEnv[%d]: want KEY=VALUE", i))
		case slices.Contains(controlledEnv, k):
			ps = append(ps, fmt.Sprintf("extraEnv[%d]: %s is set from the subscription only", i, k))
		}
	}
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(DefaultStateDir(), "cli", o.Name)
	}
	ps = append(ps, checkWorkDir(o.WorkDir)...)
	if len(ps) > 0 {
		return nil, fmt.Errorf("%w: claude-cli %s: %s", ErrInvalidConfig, o.Name, strings.Join(ps, "; "))
	}
	return &ClaudeCLI{opts: o, gate: newGate(o.Name, o.MaxConcurrent, queue)}, nil
}

// queueSize applies MaxQueue's default.
func queueSize(maxConcurrent, maxQueue int) (int, []string) {
	var ps []string
	if maxConcurrent < 1 {
		ps = append(ps, fmt.Sprintf("maxConcurrent: want 1 or more, got %d", maxConcurrent))
	}
	switch {
	case maxQueue == 0:
		return 4 * maxConcurrent, ps
	case maxQueue < 0:
		return 0, ps
	}
	return maxQueue, ps
}

// Name returns the backend's name.
func (c *ClaudeCLI) Name() string { return c.opts.Name }

// Load reports the turns running and waiting.
func (c *ClaudeCLI) Load() Load { return c.gate.load() }

// Run runs one turn as a sandboxed text engine: `Bin -p --output-format
// stream-json --verbose --tools "" --strict-mcp-config` (a non-streaming
// turn collects the stream), the prompt on stdin, in WorkDir, with the
// allow-listed environment plus CLAUDE_CONFIG_DIR and
// CLAUDE_CODE_OAUTH_TOKEN from tgt. A run whose init line lists any tool is
// killed (ErrSandbox). The process runs in its own process group; when ctx
// ends or the timeout passes, the group gets SIGTERM, then SIGKILL after
// KillGrace. A turn that finished is returned even if ctx ended meanwhile:
// its cost was incurred and must be settled.
func (c *ClaudeCLI) Run(ctx context.Context, tgt Target, req Request, onDelta func(text string)) (*Result, error) {
	args, err := cliArgs(req)
	if err != nil {
		return nil, err
	}
	if err := checkTarget(tgt); err != nil {
		return nil, err
	}
	release, err := c.gate.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if !req.Stream {
		onDelta = nil // the stream is collected, not relayed
	}
	return c.run(ctx, tgt, req, args, onDelta)
}

// cliArgs builds argv, validating each value that reaches it. The prompt
// goes on stdin: argv is visible to every user of the host.
func cliArgs(req Request) ([]string, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, a...))
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, bad("empty prompt")
	}
	// No tools (--tools "") and no MCP server, not even the config dir's
	// settings' (--strict-mcp-config with no --mcp-config): both are needed.
	args := []string{"-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
		"--tools", "", "--strict-mcp-config"}
	if req.Model != "" {
		if !modelPattern.MatchString(req.Model) {
			return nil, bad("model name %q: want an alias or a claude-* name", excerpt(req.Model))
		}
		args = append(args, "--model", req.Model)
	}
	if req.SystemPrompt != "" {
		if strings.ContainsRune(req.SystemPrompt, 0) {
			return nil, bad("system prompt contains a NUL byte")
		}
		if len(req.SystemPrompt) > maxSystemPrompt {
			return nil, bad("system prompt is %d bytes; the CLI takes at most %d", len(req.SystemPrompt), maxSystemPrompt)
		}
		args = append(args, "--system-prompt", req.SystemPrompt)
	}
	if req.ResumeSession != "" {
		if !resumePattern.MatchString(req.ResumeSession) {
			return nil, bad("resume session id: want 1 to 128 of A-Z a-z 0-9 -")
		}
		args = append(args, "--resume", req.ResumeSession)
	}
	return args, nil
}

func checkTarget(t Target) error {
	if t.ConfigDir != "" && (strings.ContainsRune(t.ConfigDir, 0) || !filepath.IsAbs(t.ConfigDir)) {
		return fmt.Errorf("%w: config dir must be an absolute path", ErrInvalidRequest)
	}
	if strings.ContainsAny(t.OAuthToken, "\x00\r\n") {
		return fmt.Errorf("%w: OAuth token contains a control character", ErrInvalidRequest)
	}
	return nil
}

// env is the allow-listed part of the gateway's environment, ExtraEnv, and
// the subscription's config dir and token.
func (c *ClaudeCLI) env(t Target) []string {
	env := make([]string, 0, len(inheritedEnv)+len(c.opts.ExtraEnv)+4)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(inheritedEnv, k) || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	env = append(env, c.opts.ExtraEnv...)
	env = append(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
	if t.ConfigDir != "" {
		env = append(env, "CLAUDE_CONFIG_DIR="+t.ConfigDir)
	}
	if t.OAuthToken != "" {
		env = append(env, "CLAUDE_CODE_OAUTH_TOKEN="+t.OAuthToken)
	}
	return env
}

// classify turns a failed turn's words (is_error result, stderr, stray
// stdout) into the error the gateway acts on.
func (c *ClaudeCLI) classify(text, reason, token string) error {
	text = redact(text, token)
	if le, ok := DetectLimit(text, time.Now()); ok {
		return le
	}
	switch {
	case DetectAuth(text):
		return fmt.Errorf("%w: %s: %s", ErrAuth, c.opts.Name, excerpt(text))
	case detectSessionNotFound(text):
		return fmt.Errorf("%w: %s", ErrSessionNotFound, c.opts.Name)
	}
	if t := excerpt(text); t != "" {
		reason += ": " + t
	}
	return fmt.Errorf("%w: %s: %s", ErrBackend, c.opts.Name, reason)
}

// redact removes secret from s before any of s is quoted.
func redact(s, secret string) string {
	if len(secret) >= 4 {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return secretPattern.ReplaceAllString(s, "[redacted]")
}
