// Command fakeclaude behaves like `claude -p` for tests: it takes the same
// flags, reads the prompt on stdin and prints the CLI's json or stream-json
// output (shapes of ../../../shared/fixtures/claude-cli). The answer echoes
// the last line of the prompt: "echo: <line>".
//
// State lives in $CLAUDE_CONFIG_DIR, like the real CLI's:
//   - fake-sessions/<id>: sessions it answered; --resume of another id fails
//     with "No conversation found with session ID: <id>", exit 1.
//   - fake-calls.jsonl: one line per call {args, configDir, cwd, cwdEntries,
//     oauthTokenSet, oauthTokenSHA256, anthropicApiKeySet, envNames, prompt,
//     pid, childPid, mode}, so tests can assert what the CLI saw (never the
//     token itself, nor any variable's value).
//   - fake-mode: how to behave (else $FAKECLAUDE_MODE, else ok):
//     ok | obey | slow <ms> | stream-slow <ms> | hang | crash | auth |
//     stderr <text> | tools | limit-epoch [<seconds from now>] | limit-9am |
//     limit-hit | limit-session | limit-weekly | limit-429 | recall.
//     obey answers with the prompt's last line itself, as a model that does
//     what the prompt says; recall answers "recall: " and every user line
//     this CLI session has seen, joined by " | ": those of the session it
//     resumed (kept in its fake-sessions file) and those of the prompt (a
//     replayed transcript's <assistant> blocks and tags left out), so a
//     test reads in the answer what the CLI was given; tools lists a tool in the init line whatever the
//     flags say, as a CLI version that ignored them would.
//   - fake-cost: the total_cost_usd of an answer (else $FAKECLAUDE_COST,
//     else 0.0123).
//   - fake-rate-limits.jsonl: rate_limit_event lines printed after the init
//     line (stream-json).
//   - settings.json: its mcpServers are listed in the init line, unless
//     --strict-mcp-config; every built-in tool is, unless --tools "".
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// flags are the options of `claude` this fake understands.
type flags struct {
	print, verbose, partial    bool
	format, model, system, arg string
	resume                     string
	tools                      *string // --tools, when given
	strictMCP                  bool
}

func main() {
	if os.Getenv("FAKECLAUDE_CHILD") == "1" {
		// A grandchild that outlives SIGTERM: only a kill of the whole
		// process group ends it.
		signal.Ignore(syscall.SIGTERM)
		sleepForever()
	}
	os.Exit(run())
}

func run() int {
	f, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stdin, _ := io.ReadAll(os.Stdin)
	prompt := string(stdin)
	if f.arg != "" {
		prompt = f.arg
	}
	dir := os.Getenv("CLAUDE_CONFIG_DIR")
	mode, modeArg := readMode(dir)

	childPid := 0
	if mode == "hang" {
		signal.Ignore(syscall.SIGTERM)
		childPid = startChild()
	}
	logCall(dir, prompt, mode, childPid)

	if f.resume != "" && !knownSession(dir, f.resume) {
		fmt.Fprintf(os.Stderr, "No conversation found with session ID: %s\n", f.resume)
		return 1
	}

	out := newOutput(f, dir, mode == "tools")
	switch mode {
	case "hang":
		sleepForever()
	case "slow":
		time.Sleep(millis(modeArg, 1000))
	case "crash":
		fmt.Fprint(os.Stdout, "}{ \x00garbage, not json\n")
		fmt.Fprintf(os.Stderr, "fake crash: segmentation fault (credentials %s)\n", os.Getenv("CLAUDE_CODE_OAUTH_TOKEN"))
		return 2
	case "stderr":
		fmt.Fprintln(os.Stderr, modeArg)
		return 1
	case "auth":
		return out.fail("Invalid API key · Please run /login")
	case "limit-epoch":
		secs, err := strconv.ParseInt(modeArg, 10, 64)
		if err != nil {
			secs = 3600
		}
		return out.fail(fmt.Sprintf("Claude AI usage limit reached|%d", time.Now().Unix()+secs))
	case "limit-9am":
		return out.fail("Claude usage limit reached. Your limit will reset at 9am (America/Chicago).")
	case "limit-hit":
		return out.fail("You've hit your limit · resets 3:20pm (Asia/Shanghai)")
	case "limit-session":
		return out.fail("You've hit your session limit · resets 5:10pm (Europe/Paris)")
	case "limit-weekly":
		return out.fail("You've hit your weekly limit · resets 5:10pm (Europe/Paris)")
	case "limit-429":
		return out.fail(`API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit. Please try again later."}}`)
	case "stream-slow":
		out.delay = millis(modeArg, 200)
	case "obey":
		out.succeed(dir, lastLine(prompt))
		return 0
	case "recall":
		seen := append(sessionLines(dir, f.resume), userLines(prompt)...)
		out.succeed(dir, "recall: "+strings.Join(seen, " | "))
		writeSessionLines(dir, out.session, seen)
		return 0
	}
	out.succeed(dir, "echo: "+lastLine(prompt))
	return 0
}

// parseFlags reads the flags the way the CLI does: unknown ones and missing
// values are errors, exit 1.
func parseFlags(args []string) (flags, error) {
	f := flags{format: "text"}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		value := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("error: option '%s <value>' argument missing", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "-p" || a == "--print":
			f.print = true
		case a == "--verbose":
			f.verbose = true
		case a == "--include-partial-messages":
			f.partial = true
		case name == "--output-format":
			f.format, err = value()
		case name == "--model":
			f.model, err = value()
		case name == "--system-prompt":
			f.system, err = value()
		case name == "--resume" || name == "-r":
			f.resume, err = value()
		case name == "--tools":
			var v string
			v, err = value()
			f.tools = &v
		case a == "--strict-mcp-config":
			f.strictMCP = true
		case strings.HasPrefix(a, "-"):
			return f, fmt.Errorf("error: unknown option '%s'", a)
		default:
			f.arg = a
		}
		if err != nil {
			return f, err
		}
	}
	switch {
	case !f.print:
		return f, fmt.Errorf("fakeclaude: only print mode (-p) is faked")
	case f.format != "text" && f.format != "json" && f.format != "stream-json":
		return f, fmt.Errorf("error: option '--output-format <format>' argument '%s' is invalid", f.format)
	case f.format == "stream-json" && !f.verbose:
		return f, fmt.Errorf("Error: When using --print, --output-format=stream-json requires --verbose")
	}
	return f, nil
}

func readMode(dir string) (string, string) {
	raw := os.Getenv("FAKECLAUDE_MODE")
	if dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, "fake-mode")); err == nil {
			raw = string(b)
		}
	}
	mode, arg, _ := strings.Cut(strings.TrimSpace(raw), " ")
	if mode == "" {
		mode = "ok"
	}
	return mode, strings.TrimSpace(arg)
}

func startChild() int {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "FAKECLAUDE_CHILD=1")
	cmd.Stderr = os.Stderr // holds the parent's pipe open, as a stray tool process would
	if cmd.Start() != nil {
		return 0
	}
	return cmd.Process.Pid
}

// logCall appends what this call saw to fake-calls.jsonl.
func logCall(dir, prompt, mode string, childPid int) {
	if dir == "" {
		return
	}
	token, tokenSet := os.LookupEnv("CLAUDE_CODE_OAUTH_TOKEN")
	sum := ""
	if tokenSet {
		h := sha256.Sum256([]byte(token))
		sum = hex.EncodeToString(h[:])
	}
	_, apiKeySet := os.LookupEnv("ANTHROPIC_API_KEY")
	cwd, _ := os.Getwd()
	entries, _ := os.ReadDir(cwd)
	var names []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	line, _ := json.Marshal(map[string]any{
		"args": os.Args[1:], "configDir": dir, "cwd": cwd, "cwdEntries": len(entries), "oauthTokenSet": tokenSet, "oauthTokenSHA256": sum,
		"anthropicApiKeySet": apiKeySet, "envNames": names, "prompt": prompt, "pid": os.Getpid(),
		"childPid": childPid, "mode": mode,
	})
	f, err := os.OpenFile(filepath.Join(dir, "fake-calls.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

var sessionPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)

func knownSession(dir, id string) bool {
	if dir == "" || !sessionPattern.MatchString(id) {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "fake-sessions", id))
	return err == nil
}

func recordSession(dir, id string) {
	if dir == "" {
		return
	}
	sessions := filepath.Join(dir, "fake-sessions")
	if os.MkdirAll(sessions, 0o700) == nil {
		_ = os.WriteFile(filepath.Join(sessions, id), nil, 0o600)
	}
}

func lastLine(prompt string) string {
	last := ""
	sc := bufio.NewScanner(strings.NewReader(prompt))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

func millis(s string, def int) time.Duration {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		n = def
	}
	return time.Duration(n) * time.Millisecond
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

// sessionLines are the user lines a session it answered has seen.
func sessionLines(dir, id string) []string {
	if id == "" || !knownSession(dir, id) {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "fake-sessions", id))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func writeSessionLines(dir, id string, lines []string) {
	if dir == "" || len(lines) == 0 {
		return
	}
	_ = os.WriteFile(filepath.Join(dir, "fake-sessions", id), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// userLines are the prompt's non-empty lines, without the transcript's tags
// and without what its <assistant> blocks say.
func userLines(prompt string) []string {
	var out []string
	inAssistant := false
	for _, l := range strings.Split(prompt, "\n") {
		l = strings.TrimSpace(l)
		switch l {
		case "<assistant>":
			inAssistant = true
			continue
		case "</assistant>":
			inAssistant = false
			continue
		case "", "<user>", "</user>", "<conversation_history>", "</conversation_history>":
			continue
		}
		if !inAssistant {
			out = append(out, l)
		}
	}
	return out
}
