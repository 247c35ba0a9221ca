//go:build unix

package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/testutil"
)

// The fake CLI (tests/fakeclaude) is built on first use, not in TestMain:
// every fuzzing worker process runs TestMain, and none of them needs it.
var (
	fakeDir   string
	fakeOnce  sync.Once
	fakeBuilt string
	fakeErr   error
)

func TestMain(m *testing.M) {
	var err error
	if fakeDir, err = os.MkdirTemp("", "fakeclaude"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(fakeDir)
	os.Exit(code)
}

// fakeBin builds tests/fakeclaude once and returns its path.
func fakeBin(t *testing.T) string {
	t.Helper()
	fakeOnce.Do(func() {
		bin := filepath.Join(fakeDir, "claude")
		out, err := exec.Command("go", "build", "-o", bin, "../../tests/fakeclaude").CombinedOutput()
		if err != nil {
			fakeErr = fmt.Errorf("building the fake claude CLI: %v\n%s", err, out)
		}
		fakeBuilt = bin
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeBuilt
}

// fakeCall is one line of the fake's fake-calls.jsonl.
type fakeCall struct {
	Args               []string `json:"args"`
	ConfigDir          string   `json:"configDir"`
	Cwd                string   `json:"cwd"`
	CwdEntries         int      `json:"cwdEntries"`
	OAuthTokenSet      bool     `json:"oauthTokenSet"`
	OAuthTokenSHA256   string   `json:"oauthTokenSHA256"`
	AnthropicAPIKeySet bool     `json:"anthropicApiKeySet"`
	EnvNames           []string `json:"envNames"`
	Prompt             string   `json:"prompt"`
	PID                int      `json:"pid"`
	ChildPID           int      `json:"childPid"`
}

// subscriptionDir is a config dir whose fake CLI behaves as mode says.
func subscriptionDir(t *testing.T, mode string) string {
	t.Helper()
	dir := t.TempDir()
	if mode != "" {
		if err := os.WriteFile(filepath.Join(dir, "fake-mode"), []byte(mode), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newFakeCLI(t *testing.T, o CLIOptions) *ClaudeCLI {
	t.Helper()
	o.Bin = fakeBin(t)
	if o.WorkDir == "" {
		o.WorkDir = filepath.Join(t.TempDir(), "cwd")
	}
	c, err := NewClaudeCLI(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func calls(t *testing.T, dir string) []fakeCall {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "fake-calls.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []fakeCall
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var c fakeCall
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("fake-calls.jsonl: %v", err)
		}
		out = append(out, c)
	}
	return out
}

// waitCalls waits until the CLI of dir has been called n times.
func waitCalls(t *testing.T, dir string, n int) []fakeCall {
	t.Helper()
	var cs []fakeCall
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d calls of the CLI", n), func() bool {
		cs = calls(t, dir)
		return len(cs) >= n
	})
	return cs
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if pid <= 0 || errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, fmt.Sprintf("the end of process %d", pid), func() bool { return !alive(pid) })
}

func TestClaudeCLIAnswers(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "")
			c := newFakeCLI(t, CLIOptions{ExtraEnv: []string{"FAKECLAUDE_COST=0.5"}})
			var deltas []string
			req := Request{Model: "haiku", SystemPrompt: "Be brief.", Prompt: "User: hi\n\nAssistant: hello\n\nUser: what now?", Stream: stream}
			res, err := c.Run(context.Background(), Target{ConfigDir: dir}, req, func(s string) { deltas = append(deltas, s) })
			if err != nil {
				t.Fatal(err)
			}
			if res.Text != "echo: User: what now?" || res.CostUSD != 0.5 || res.Model != "claude-haiku-4-5" ||
				res.StopReason != "end_turn" || res.NumTurns != 1 || res.Usage.InputTokens != 12 || res.IsError {
				t.Errorf("result = %+v", res)
			}
			if mu := res.ModelUsage["claude-haiku-4-5"]; mu.CostUSD != 0.5 {
				t.Errorf("modelUsage = %+v", res.ModelUsage)
			}
			if _, err := os.Stat(filepath.Join(dir, "fake-sessions", res.CLISessionID)); err != nil {
				t.Errorf("CLISessionID %q is not a session the CLI holds: %v", res.CLISessionID, err)
			}
			if stream {
				if len(deltas) < 3 || strings.Join(deltas, "") != res.Text {
					t.Errorf("deltas %q do not make up %q", deltas, res.Text)
				}
			} else if deltas != nil {
				t.Errorf("onDelta called without streaming: %q", deltas)
			}
			call := calls(t, dir)[0]
			if call.Prompt != req.Prompt {
				t.Errorf("the CLI read %q on stdin, want the prompt", call.Prompt)
			}
			args := strings.Join(call.Args, " ")
			if !strings.Contains(args, "--model haiku") || !strings.Contains(args, "--system-prompt Be brief.") ||
				strings.Contains(args, "what now") {
				t.Errorf("argv = %q: want --model and --system-prompt, never the prompt", call.Args)
			}
		})
	}
}

func TestClaudeCLIEnvironment(t *testing.T) {
	// The gateway's own environment holds credentials that must not reach
	// the CLI: another login, the fallback's API key, its own secrets, and
	// whatever secret an operator adds next (the environment is allow-listed).
	t.Setenv("CLAUDE_CONFIG_DIR", "/somewhere/else")
	t.Setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-parent-token")
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-api03-fallback")
	t.Setenv("CLAUDE_TOKEN_SUB1", "sk-ant-oat01-sub1")
	gatewaySecrets := []string{"REDIS_PASSWORD", "SENTRY_DSN", "OTEL_EXPORTER_OTLP_HEADERS", "API_KEYS",
		"ADMIN_TOKEN", "WEBHOOK_SECRET", "REDIS_URL", "SOME_FUTURE_SECRET"}
	for _, k := range gatewaySecrets {
		t.Setenv(k, "secret-value")
	}
	t.Setenv("LC_ALL", "C.UTF-8")
	c := newFakeCLI(t, CLIOptions{})
	const token = "sk-ant-oat01-the-subscriptions-own"
	sum := sha256.Sum256([]byte(token))

	dir := subscriptionDir(t, "")
	if _, err := c.Run(context.Background(), Target{ConfigDir: dir, OAuthToken: token}, Request{Prompt: "hi"}, nil); err != nil {
		t.Fatal(err)
	}
	call := calls(t, dir)[0]
	if call.ConfigDir != dir || !call.OAuthTokenSet || call.OAuthTokenSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("the CLI saw configDir %q, token set %v (hash %s); want %q and the subscription's token",
			call.ConfigDir, call.OAuthTokenSet, call.OAuthTokenSHA256, dir)
	}
	if call.AnthropicAPIKeySet || slices.Contains(call.EnvNames, "CLAUDE_TOKEN_SUB1") {
		t.Errorf("the CLI inherited another credential: %q", call.EnvNames)
	}
	for _, k := range gatewaySecrets {
		if slices.Contains(call.EnvNames, k) {
			t.Errorf("the CLI inherited %s: %q", k, call.EnvNames)
		}
	}
	for _, k := range []string{"PATH", "LC_ALL", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"} {
		if !slices.Contains(call.EnvNames, k) {
			t.Errorf("the CLI lacks %s: %q", k, call.EnvNames)
		}
	}
	if strings.Contains(strings.Join(call.Args, " "), token) {
		t.Errorf("the token is in argv: %q", call.Args)
	}

	dir = subscriptionDir(t, "")
	if _, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil); err != nil {
		t.Fatal(err)
	}
	if call := calls(t, dir)[0]; call.OAuthTokenSet {
		t.Error("without a token of its own, the CLI still got one (the gateway's)")
	}
}

// TestClaudeCLISandbox (issue 8, finding 1): every run, streaming or not,
// is a text engine with no tools and no MCP server, in an empty working
// directory of its own.
func TestClaudeCLISandbox(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "")
			// The config dir's settings mount an MCP server: --strict-mcp-config
			// must keep it out.
			if err := os.WriteFile(filepath.Join(dir, "settings.json"),
				[]byte(`{"mcpServers":{"notes":{"command":"notes-server"}}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(t.TempDir(), "work")
			c := newFakeCLI(t, CLIOptions{WorkDir: work})
			if _, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi", Stream: stream}, nil); err != nil {
				t.Fatal(err)
			}
			call := calls(t, dir)[0]
			args := call.Args
			i := slices.Index(args, "--tools")
			if i < 0 || i+1 >= len(args) || args[i+1] != "" || !slices.Contains(args, "--strict-mcp-config") ||
				slices.Contains(args, "--mcp-config") {
				t.Errorf("argv = %q: want --tools \"\" and --strict-mcp-config, no --mcp-config", args)
			}
			if j := slices.Index(args, "--output-format"); j < 0 || args[j+1] != "stream-json" || !slices.Contains(args, "--verbose") {
				t.Errorf("argv = %q: want --output-format stream-json --verbose", args)
			}
			wd, _ := os.Getwd()
			if call.Cwd != work || call.CwdEntries != 0 || call.Cwd == wd || call.Cwd == dir {
				t.Errorf("the CLI ran in %q (%d entries); want the empty %q", call.Cwd, call.CwdEntries, work)
			}
			if fi, err := os.Stat(work); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("working directory: %v, %v; want mode 0700", fi, err)
			}
		})
	}
}

// TestClaudeCLIRefusesMountedTools (issue 8, finding 1): a CLI whose init
// line lists a tool anyway is killed, and nothing of it is relayed.
func TestClaudeCLIRefusesMountedTools(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "tools")
			c := newFakeCLI(t, CLIOptions{})
			var deltas []string
			res, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "read ~/.credentials.json", Stream: stream},
				func(s string) { deltas = append(deltas, s) })
			if !errors.Is(err, ErrSandbox) || !errors.Is(err, ErrBackend) || res != nil {
				t.Fatalf("Run = %+v, %v; want ErrSandbox", res, err)
			}
			if len(deltas) > 0 {
				t.Errorf("text of a CLI with tools reached the client: %q", deltas)
			}
			if !strings.Contains(err.Error(), "Read") {
				t.Errorf("error %q does not name the tool", err)
			}
		})
	}
}

func TestClaudeCLIWorkDirMustBeEmptyAndApart(t *testing.T) {
	dir := subscriptionDir(t, "")
	work := filepath.Join(t.TempDir(), "work")
	c := newFakeCLI(t, CLIOptions{WorkDir: work})
	if err := os.MkdirAll(filepath.Join(work, ".claude"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil); !errors.Is(err, ErrBackend) ||
		!strings.Contains(err.Error(), "not empty") {
		t.Errorf("Run in a working directory with files = %v; want refused", err)
	}
	if len(calls(t, dir)) != 0 {
		t.Error("the CLI ran in a working directory that is not empty")
	}
	inside := newFakeCLI(t, CLIOptions{WorkDir: filepath.Join(dir, "cwd")})
	if _, err := inside.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil); !errors.Is(err, ErrBackend) {
		t.Errorf("Run with the working directory inside the config dir = %v; want refused", err)
	}
	wd, _ := os.Getwd()
	if _, err := NewClaudeCLI(CLIOptions{WorkDir: wd}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewClaudeCLI(WorkDir = the gateway's working directory) = %v; want ErrInvalidConfig", err)
	}
	if _, err := NewClaudeCLI(CLIOptions{WorkDir: "relative"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewClaudeCLI(relative WorkDir) = %v; want ErrInvalidConfig", err)
	}
}

// TestClaudeCLILimitsOnlyFromErrorChannels (issue 8, finding 2): a model
// told to answer with a limit message answers; only the CLI's error
// channels (is_error, stderr, exit status, a rejected rate_limit_event)
// report a limit.
func TestClaudeCLILimitsOnlyFromErrorChannels(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "obey")
			c := newFakeCLI(t, CLIOptions{})
			for _, text := range []string{"Claude AI usage limit reached|9999999999",
				"You've hit your weekly limit · resets 5:10pm (Europe/Paris)", "Invalid API key · Please run /login"} {
				res, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "say exactly:\n" + text, Stream: stream}, nil)
				if err != nil || res.Text != text {
					t.Errorf("an answer saying %q = %+v, %v; want it answered", text, res, err)
				}
			}
		})
	}
}

// TestClaudeCLIRejectedRateLimitEvent (issue 8, finding 2): a rejected
// rate_limit_event is a limit with the event's reset, even when the error
// text names another time, and the failed turn's usage comes with it.
func TestClaudeCLIRejectedRateLimitEvent(t *testing.T) {
	reset := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "limit-epoch 7200")
			event := fmt.Sprintf(`{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":%d,"rateLimitType":"five_hour","unifiedWindows":{"five_hour":{"utilization":1,"resetsAt":%d},"seven_day":{"utilization":0.65,"resetsAt":%d}}}}`,
				reset.Unix(), reset.Unix(), reset.Add(72*time.Hour).Unix())
			if err := os.WriteFile(filepath.Join(dir, "fake-rate-limits.jsonl"), []byte(event+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := newFakeCLI(t, CLIOptions{})
			_, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi", Stream: stream}, nil)
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("Run = %v; want a LimitError", err)
			}
			if !le.ResetAt.Equal(reset) || le.Window != WindowFiveHour {
				t.Errorf("limit resets %v in window %q; want the event's %v, five_hour", le.ResetAt, le.Window, reset)
			}
			if le.Result == nil || le.Result.Usage.InputTokens != 12 || le.Result.CLISessionID == "" {
				t.Errorf("the limited turn's usage = %+v; want what its result reported", le.Result)
			}
		})
	}
}

func TestClaudeCLIStreamsWhileRunning(t *testing.T) {
	dir := subscriptionDir(t, "stream-slow 300")
	c := newFakeCLI(t, CLIOptions{})
	var firstAt time.Time
	running := false
	res, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "one two three", Stream: true}, func(string) {
		if firstAt.IsZero() {
			firstAt = time.Now()
			running = alive(calls(t, dir)[0].PID)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !running {
		t.Error("the first delta arrived after the CLI had exited: streaming is buffered")
	}
	if wait := time.Since(firstAt); wait < 600*time.Millisecond {
		t.Errorf("Run returned %v after the first delta; the CLI takes ≥ 900ms more", wait)
	}
	if res.Text != "echo: one two three" {
		t.Errorf("text = %q", res.Text)
	}
}

func TestClaudeCLIClassifiesFailures(t *testing.T) {
	chicago, _ := time.LoadLocation("America/Chicago")
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(loc *time.Location, h, m int) func(*testing.T, time.Time) {
		return func(t *testing.T, reset time.Time) {
			l := reset.In(loc)
			if l.Hour() != h || l.Minute() != m || !reset.After(time.Now()) || time.Until(reset) > 25*time.Hour {
				t.Errorf("ResetAt = %v, want the next %02d:%02d in %v", reset, h, m, loc)
			}
		}
	}
	for _, tc := range []struct {
		mode  string
		want  error
		reset func(*testing.T, time.Time)
	}{
		{"limit-epoch 7200", ErrLimited, func(t *testing.T, reset time.Time) {
			if d := time.Until(reset); d < 7100*time.Second || d > 7200*time.Second {
				t.Errorf("ResetAt = %v, want in 2 h", reset)
			}
		}},
		{"limit-9am", ErrLimited, at(chicago, 9, 0)},
		{"limit-hit", ErrLimited, nil},
		{"limit-session", ErrLimited, at(paris, 17, 10)},
		{"limit-weekly", ErrLimited, at(paris, 17, 10)},
		{"limit-429", ErrLimited, func(t *testing.T, reset time.Time) {
			if !reset.IsZero() {
				t.Errorf("ResetAt = %v, want zero (the caller uses the block end)", reset)
			}
		}},
		{"auth", ErrAuth, nil},
		{"stderr OAuth token has expired. Please run /login", ErrAuth, nil},
		{"stderr Claude AI usage limit reached|1766502000", ErrLimited, nil},
		{"stderr Error: something odd happened", ErrBackend, nil},
		{"crash", ErrBackend, nil},
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.mode, stream), func(t *testing.T) {
				t.Parallel()
				const token = "sk-ant-oat01-do-not-leak-me"
				dir := subscriptionDir(t, tc.mode)
				c := newFakeCLI(t, CLIOptions{})
				var deltas []string
				res, err := c.Run(context.Background(), Target{ConfigDir: dir, OAuthToken: token}, Request{Prompt: "hi", Stream: stream},
					func(s string) { deltas = append(deltas, s) })
				if !errors.Is(err, tc.want) {
					t.Fatalf("Run = %+v, %v; want %v", res, err, tc.want)
				}
				if len(deltas) > 0 {
					t.Errorf("the failure reached the client as text: %q", deltas)
				}
				if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "do-not-leak") {
					t.Errorf("error carries the token: %v", err)
				}
				var le *LimitError
				if errors.As(err, &le) && tc.reset != nil {
					tc.reset(t, le.ResetAt)
				}
				if strings.HasPrefix(tc.mode, "stderr Error") && !strings.Contains(err.Error(), "something odd happened") {
					t.Errorf("error %q lost the CLI's stderr", err)
				}
			})
		}
	}
}

func TestClaudeCLIResume(t *testing.T) {
	dir := subscriptionDir(t, "")
	c := newFakeCLI(t, CLIOptions{})
	tgt := Target{ConfigDir: dir}
	first, err := c.Run(context.Background(), tgt, Request{Prompt: "hi"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Run(context.Background(), tgt, Request{Prompt: "again", ResumeSession: first.CLISessionID}, nil)
	if err != nil {
		t.Fatalf("resume of the session the CLI just answered: %v", err)
	}
	if args := calls(t, dir)[1].Args; !slices.Contains(args, "--resume") || !slices.Contains(args, first.CLISessionID) {
		t.Errorf("argv = %q, want --resume %s", args, first.CLISessionID)
	}
	if second.Text != "echo: again" {
		t.Errorf("text = %q", second.Text)
	}

	// Another replica's config dir does not hold the session.
	other := Target{ConfigDir: subscriptionDir(t, "")}
	for _, stream := range []bool{false, true} {
		_, err = c.Run(context.Background(), other, Request{Prompt: "hi", ResumeSession: first.CLISessionID, Stream: stream}, nil)
		if !errors.Is(err, ErrSessionNotFound) {
			t.Errorf("resume on another config dir (stream=%v) = %v, want ErrSessionNotFound", stream, err)
		}
	}
}

func TestClaudeCLIRefusesBadRequests(t *testing.T) {
	dir := subscriptionDir(t, "")
	c := newFakeCLI(t, CLIOptions{})
	for _, tc := range []struct {
		name string
		tgt  Target
		req  Request
	}{
		{"empty prompt", Target{ConfigDir: dir}, Request{Prompt: " \n"}},
		{"flag as model", Target{ConfigDir: dir}, Request{Prompt: "hi", Model: "--dangerously-skip-permissions"}},
		{"resume id with a path", Target{ConfigDir: dir}, Request{Prompt: "hi", ResumeSession: "../../etc/passwd"}},
		{"resume id as a flag", Target{ConfigDir: dir}, Request{Prompt: "hi", ResumeSession: "--x y"}},
		{"NUL in system prompt", Target{ConfigDir: dir}, Request{Prompt: "hi", SystemPrompt: "a\x00b"}},
		{"system prompt over the argv limit", Target{ConfigDir: dir}, Request{Prompt: "hi", SystemPrompt: strings.Repeat("a", maxSystemPrompt+1)}},
		{"relative config dir", Target{ConfigDir: "claude-sub1"}, Request{Prompt: "hi"}},
		{"token with a newline", Target{ConfigDir: dir, OAuthToken: "a\nB=c"}, Request{Prompt: "hi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Run(context.Background(), tc.tgt, tc.req, nil); !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Run = %v, want ErrInvalidRequest", err)
			}
		})
	}
	if cs := calls(t, dir); len(cs) != 0 {
		t.Errorf("refused requests reached the CLI: %+v", cs)
	}
}

func TestClaudeCLITimeoutKillsTheProcessGroup(t *testing.T) {
	dir := subscriptionDir(t, "hang")
	c := newFakeCLI(t, CLIOptions{Timeout: 300 * time.Millisecond, KillGrace: 200 * time.Millisecond})
	start := time.Now()
	_, err := c.Run(context.Background(), Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to give up on a CLI that ignores SIGTERM", d)
	}
	call := calls(t, dir)[0]
	if call.ChildPID == 0 {
		t.Fatal("the fake did not start its child")
	}
	waitGone(t, call.PID)
	waitGone(t, call.ChildPID) // the whole tree, not only the CLI
}

func TestClaudeCLICancelKillsTheProcess(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			dir := subscriptionDir(t, "slow 30000")
			c := newFakeCLI(t, CLIOptions{KillGrace: 5 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := c.Run(ctx, Target{ConfigDir: dir}, Request{Prompt: "hi", Stream: stream}, nil)
				errc <- err
			}()
			pid := waitCalls(t, dir, 1)[0].PID
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want ErrCanceled wrapping context.Canceled", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Run did not return after cancel (SIGTERM should end a slow CLI at once)")
			}
			waitGone(t, pid)
		})
	}
}

func TestClaudeCLIQueueFull(t *testing.T) {
	dir := subscriptionDir(t, "slow 30000")
	c := newFakeCLI(t, CLIOptions{MaxConcurrent: 1, MaxQueue: 1, KillGrace: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 2)
	run := func() {
		_, err := c.Run(ctx, Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil)
		errc <- err
	}
	go run()
	waitCalls(t, dir, 1)
	go run()
	testutil.Eventually(t, 5*time.Second, "one waiting run", func() bool { return c.Load().Waiting == 1 })
	start := time.Now()
	_, err := c.Run(ctx, Target{ConfigDir: dir}, Request{Prompt: "hi"}, nil)
	var qf *QueueFullError
	if !errors.As(err, &qf) || !errors.Is(err, ErrQueueFull) || qf.RetryAfter <= 0 {
		t.Fatalf("third Run = %v, want ErrQueueFull with a RetryAfter", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a full queue took %v to refuse", d)
	}
	if n := len(calls(t, dir)); n != 1 {
		t.Errorf("%d CLI processes started, want 1 (MaxConcurrent)", n)
	}
	cancel()
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrCanceled) {
			t.Errorf("canceled Run = %v, want ErrCanceled", err)
		}
	}
	if l := c.Load(); l != (Load{}) {
		t.Errorf("load after everything ended = %+v", l)
	}
}

func TestClaudeCLIMissingBinary(t *testing.T) {
	c, err := NewClaudeCLI(CLIOptions{Bin: filepath.Join(t.TempDir(), "no-such-claude")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), Target{}, Request{Prompt: "hi"}, nil); !errors.Is(err, ErrBackend) {
		t.Errorf("Run = %v, want ErrBackend", err)
	}
}

func TestNewClaudeCLIValidates(t *testing.T) {
	for _, o := range []CLIOptions{
		{Name: "bad name!"},
		{MaxConcurrent: -1},
		{ExtraEnv: []string{"CLAUDE_CONFIG_DIR=/tmp/x"}},
		{ExtraEnv: []string{"no-equals-sign"}},
		{ExtraEnv: []string{"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=0"}},
		{Timeout: -time.Second},
	} {
		if _, err := NewClaudeCLI(o); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewClaudeCLI(%+v) = %v, want ErrInvalidConfig", o, err)
		}
	}
	c, err := NewClaudeCLI(CLIOptions{})
	if err != nil || c.Name() != DefaultCLIName || c.opts.Bin != DefaultCLIBin || cap(c.gate.slots) != DefaultMaxConcurrent ||
		c.gate.queue != 4*DefaultMaxConcurrent {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}
