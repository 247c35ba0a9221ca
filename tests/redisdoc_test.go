package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/pkg/notify"
	"github.com/authpool/authpool/pkg/pool"
)

// TestRedisDocCommands runs every redis-cli command of docs/redis.md with
// the real redis-cli against a real redis-server holding a pool with live
// sessions, usage, a limited subscription, a pending and a dead
// notification and a leader, and checks each prints what the document says.
//
// The document's convention: a ```sh block holds one redis-cli command; the
// ```text block right after it is the output. "…" in an expected line stands
// for any text (timestamps, stream ids); a line that is only "…" stands for
// any number of lines; ```text unordered compares the lines in any order.
// The output is the terminal's format (redis-cli --no-raw), which the test
// forces because its stdout is a pipe. REDISDOC_PRINT=1 logs every output.
func TestRedisDocCommands(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		rdSkipOrFail(t, "redis-cli not on PATH: %v", err)
	}
	srv, err := redistest.StartServer()
	if err != nil {
		rdSkipOrFail(t, "redis-server unavailable: %v", err)
	}
	t.Cleanup(srv.Stop)

	doc, err := os.ReadFile("../docs/redis.md")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := rdParseDoc(string(doc))
	if err != nil {
		t.Fatalf("docs/redis.md: %v", err)
	}
	rdCoversTheOperatorsQuestions(t, examples)

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	rdBuildPool(t, rdb)

	for _, ex := range examples {
		t.Run(ex.command, func(t *testing.T) {
			args := append([]string{"-p", strconv.Itoa(srv.Port), "--no-raw"}, ex.args...)
			out, err := exec.Command(cli, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("line %d: %s: %v\n%s", ex.line, ex.command, err, out)
			}
			got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if os.Getenv("REDISDOC_PRINT") == "1" {
				t.Logf("%s\n%s", ex.command, out)
			}
			if err := rdMatch(ex.want, got, ex.unordered); err != nil {
				t.Errorf("line %d: %s: %v\nwant:\n%s\ngot:\n%s", ex.line, ex.command, err,
					strings.Join(ex.want, "\n"), strings.Join(got, "\n"))
			}
		})
	}
}

func rdSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("REDIS_REQUIRED") == "1" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// rdExample is one command of the document with its expected output.
type rdExample struct {
	line      int    // of the command in the document
	command   string // as written
	args      []string
	want      []string
	unordered bool
}

// rdParseDoc extracts the ```sh / ```text pairs. Every fenced block that
// mentions redis-cli must be such a pair, so no command goes untested.
func rdParseDoc(doc string) ([]rdExample, error) {
	type block struct {
		info  string
		start int // line number of the opening fence
		lines []string
	}
	var blocks []block
	var cur *block
	sc := bufio.NewScanner(strings.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(l, "```") {
			if cur == nil {
				cur = &block{info: strings.TrimSpace(strings.TrimPrefix(l, "```")), start: n}
			} else {
				blocks = append(blocks, *cur)
				cur = nil
			}
			continue
		}
		if cur != nil {
			cur.lines = append(cur.lines, l)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: unclosed code block", cur.start)
	}

	var out []rdExample
	for i := 0; i < len(blocks); i++ {
		b := blocks[i]
		if b.info != "sh" {
			if b.info != "text" && b.info != "text unordered" && strings.Contains(strings.Join(b.lines, "\n"), "redis-cli") {
				return nil, fmt.Errorf("line %d: a ```%s block mentions redis-cli; commands go in ```sh blocks", b.start, b.info)
			}
			continue
		}
		var cmds []string
		var at int
		for j, l := range b.lines {
			if s := strings.TrimSpace(l); s != "" && !strings.HasPrefix(s, "#") {
				cmds = append(cmds, s)
				at = b.start + 1 + j
			}
		}
		if len(cmds) != 1 || !strings.HasPrefix(cmds[0], "redis-cli ") {
			return nil, fmt.Errorf("line %d: a ```sh block holds exactly one redis-cli command, got %q", b.start, cmds)
		}
		if i+1 >= len(blocks) || !strings.HasPrefix(blocks[i+1].info, "text") {
			return nil, fmt.Errorf("line %d: %s has no ```text block with its output after it", at, cmds[0])
		}
		words, err := rdSplit(strings.TrimPrefix(cmds[0], "redis-cli "))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", at, err)
		}
		next := blocks[i+1]
		out = append(out, rdExample{line: at, command: cmds[0], args: words, want: next.lines,
			unordered: next.info == "text unordered"})
		i++
	}
	if len(out) == 0 {
		return nil, errors.New("no redis-cli command found")
	}
	return out, nil
}

// rdSplit splits a command line as a POSIX shell would, for the simple
// commands a document should show: words, 'single' and "double" quotes.
// Shell features (variables, globs, pipes, redirections) are refused: the
// document's commands must work when pasted as they are.
func rdSplit(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '$' || s[j] == '`' {
					return nil, fmt.Errorf("shell expansion in %q", s)
				}
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				w.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			i = j
			inWord = true
		case strings.IndexByte("$`|&;<>()*?[\\!~", c) >= 0:
			return nil, fmt.Errorf("unquoted shell character %q in %q", c, s)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// rdMatch compares output lines with the expected ones (see the convention
// on TestRedisDocCommands).
func rdMatch(want, got []string, unordered bool) error {
	if unordered {
		w, g := slices.Clone(want), slices.Clone(got)
		slices.Sort(w)
		slices.Sort(g)
		if !slices.Equal(w, g) {
			return errors.New("lines differ (any order)")
		}
		return nil
	}
	var re strings.Builder
	re.WriteString(`\A`)
	for _, l := range want {
		if l == "…" {
			re.WriteString(`(?:[^\n]*\n)*?`)
			continue
		}
		parts := strings.Split(l, "…")
		for i, p := range parts {
			if i > 0 {
				re.WriteString(`[^\n]*`)
			}
			re.WriteString(regexp.QuoteMeta(p))
		}
		re.WriteString(`\n`)
	}
	re.WriteString(`\z`)
	if !regexp.MustCompile(re.String()).MatchString(strings.Join(got, "\n") + "\n") {
		return errors.New("output differs")
	}
	return nil
}

// rdCoversTheOperatorsQuestions checks the document answers what an
// operator asks (DESIGN §4): the commands exist, not just some commands.
func rdCoversTheOperatorsQuestions(t *testing.T, examples []rdExample) {
	t.Helper()
	for _, want := range []string{
		"redis-cli HGET authpool:{default}:session:demo-session sub",
		"redis-cli HGETALL authpool:{default}:session:demo-session",
		"redis-cli ZRANGE authpool:{default}:sub:sub1:clients 0 -1 WITHSCORES",
		"redis-cli ZCARD authpool:{default}:sub:sub1:clients",
		"redis-cli HGET authpool:{default}:sub:sub1 weeklyUsed",
		"redis-cli HGETALL authpool:{default}:sub:sub1:hourly",
		"redis-cli XREVRANGE authpool:{default}:usage + - COUNT 5",
		"redis-cli XPENDING authpool:{default}:events notifiers",
		"redis-cli XLEN authpool:{default}:events",
		"redis-cli XRANGE authpool:{default}:events:dead - +",
		"redis-cli HGETALL authpool:{default}:leader:info",
		"redis-cli GET authpool:{default}:epoch",
		"redis-cli --scan --pattern 'authpool:{default}:session:*'",
	} {
		if !slices.ContainsFunc(examples, func(e rdExample) bool { return e.command == want }) {
			t.Errorf("docs/redis.md lacks %s", want)
		}
	}
}

// rdBuildPool fills Redis the way the service does: three subscriptions,
// two live sessions, settled usage (one request on the fallback), sub2
// limited — whose limit_reached event a failing webhook sends to the dead
// stream —, sub3 cooling down with its event pending at a replica that
// died, and a leader.
func rdBuildPool(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "receiver down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(hook.Close)

	notifications := pool.NotificationsConfig{
		Rules:      []pool.NotificationRule{{Type: notify.TypeLimitReached, Channels: []string{notify.ChannelWebhook}, Enabled: true}},
		WebhookURL: hook.URL + "/notify", AllowInsecureWebhooks: true,
	}
	cfg := &pool.Config{Notifications: notifications}
	for _, id := range []string{"sub1", "sub2", "sub3"} {
		cfg.Subscriptions = append(cfg.Subscriptions, pool.SubscriptionConfig{ID: id, Email: "team+" + id + "@example.com",
			Type: "claude-max", ConfigDir: "/home/authpool/.claude-" + id, WeeklyBudget: 456})
	}
	p := pool.New(rdb, cfg, pool.Options{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Sync(ctx))

	// demo-session takes sub1 (all tie; the id breaks it), client-2 takes
	// sub2 with a turn that is still in flight.
	for _, s := range []struct {
		sid, want, turn string
		pr              pool.Priority
	}{{"demo-session", "sub1", "", pool.PriorityNormal}, {"client-2", "sub2", "demo-turn", pool.PriorityHigh}} {
		a, err := p.AllocateTurn(ctx, pool.TurnRequest{SessionID: s.sid, Priority: s.pr, TurnID: s.turn})
		must(err)
		if a.Subscription.ID != s.want {
			t.Fatalf("%s went to %q, want %s", s.sid, a.Subscription.ID, s.want)
		}
	}
	settle := func(u pool.Usage) {
		t.Helper()
		_, err := p.Settle(ctx, u)
		must(err)
	}
	settle(pool.Usage{RequestID: "demo-request-2", SubscriptionID: "sub2", SessionID: "client-2", CostUSD: 0.5,
		InputTokens: 400, OutputTokens: 100, Model: "claude-sonnet-4-5"})
	settle(pool.Usage{RequestID: "demo-request-3", CostUSD: 0.3, InputTokens: 200, OutputTokens: 50,
		Model: "claude-sonnet-4-5"})
	settle(pool.Usage{RequestID: "demo-request-1", SubscriptionID: "sub1", SessionID: "demo-session", CostUSD: 1.25,
		InputTokens: 1200, OutputTokens: 300, CacheCreationTokens: 0, CacheReadTokens: 5000, Model: "claude-sonnet-4-5",
		ModelUsage: []byte(`{"claude-sonnet-4-5":{"inputTokens":1200,"outputTokens":300,"cacheReadInputTokens":5000,"costUSD":1.25}}`),
		CLISession: "4f1c2b7e-9a3d-4e8b-b6f0-2d5c8a1e7f93"})
	// The turn's text joins demo-session's stored conversation (issue 10).
	_, err := p.AppendTurn(ctx, pool.TurnRecord{SessionID: "demo-session", TurnID: "demo-request-1",
		User: "Remember the number 42", Assistant: "I will remember 42."})
	must(err)

	// sub2 hits its limit; the webhook receiver is down, so after one
	// attempt the event goes to the dead stream.
	d, err := notify.New(notify.Options{Events: p.Events(), Consumer: "rebalancer-a", Config: notifications,
		Logger: notify.SlogLogger(slog.New(slog.NewTextHandler(io.Discard, nil))), MaxAttempts: 1,
		BackoffBase: time.Millisecond, BackoffMax: time.Millisecond, PollInterval: 20 * time.Millisecond})
	must(err)
	must(d.Start(ctx))
	_, err = p.Mark(ctx, "sub2", pool.StatusLimited, "usage_limit", time.Now().Add(3*time.Hour))
	must(err)
	for rdb.XLen(ctx, "authpool:{default}:events:dead").Val() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the limit_reached event never reached the dead stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(d.Shutdown(ctx))

	// sub3 cools down; replica rebalancer-b takes the event and dies before
	// acknowledging it, so it stays pending.
	_, err = p.Mark(ctx, "sub3", pool.StatusCooldown, "auth", time.Time{})
	must(err)
	got, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: notify.DefaultGroup, Consumer: "rebalancer-b",
		Streams: []string{"authpool:{default}:events", ">"}, Count: 1}).Result()
	must(err)
	if len(got) != 1 || len(got[0].Messages) != 1 {
		t.Fatalf("pending event: read %v", got)
	}

	// A leader, as the rebalancer's promote script writes it.
	must(rdb.Set(ctx, "authpool:{default}:epoch", 1767225600000, 0).Err())
	must(rdb.Set(ctx, "authpool:{default}:leader", "Zm9vYmFyYmF6cXV4", 10*time.Second).Err())
	must(rdb.HSet(ctx, "authpool:{default}:leader:info", "holder", "rebalancer-7d9f4-1", "epoch", "1767225600000",
		"since", strconv.FormatInt(time.Now().UnixMilli(), 10)).Err())
}
