package pool

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/mail"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/authpool/authpool/internal/ids"
)

// ErrInvalidConfig is wrapped by every error of LoadConfig, LoadConfigFromEnv,
// PoolEnabled and Validate.
var ErrInvalidConfig = errors.New("pool: invalid config")

// Problem is one thing wrong with a config.
type Problem struct {
	// Path is the JSON path of the offending value (subscriptions[1].email),
	// the name of the environment variable (WEEKLY_BUDGET), or "" for the
	// file as a whole.
	Path string
	// Message says what is wrong and what is wanted.
	Message string
}

// String renders the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found in a config. errors.Is(err,
// ErrInvalidConfig) holds for it.
type ValidationError struct {
	// Source is the config file, when there is one.
	Source string
	// Problems are in file order: decoding, environment, then validation.
	Problems []Problem
}

// maxListedProblems bounds Error(): the full list stays in Problems.
const maxListedProblems = 50

// Error names the file and lists the problems, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	n := len(e.Problems)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	fmt.Fprintf(&b, " (%d problem%s):", n, plural)
	for i, p := range e.Problems {
		if i == maxListedProblems {
			fmt.Fprintf(&b, "\n  … and %d more", n-i)
			break
		}
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Unwrap returns ErrInvalidConfig.
func (e *ValidationError) Unwrap() error { return ErrInvalidConfig }

var (
	// namePattern is the shape of subscription ids and the pool name: both
	// become part of Redis keys, so a bad one is refused, never rewritten.
	namePattern    = ids.Name
	envNamePattern = regexp.MustCompile(`^[A-Z_][A-Z0-9_]{0,127}$`)
)

// Rule types and channels a config may name.
var (
	subscriptionTypes = []string{"claude-pro", "claude-max", "api"}
	ruleTypes         = []string{"usage_threshold", "failover", "exhausted", "rotation", "limit_reached", "recovered",
		"auth_failed", "admin_action", "config_reloaded", "config_reload_failed", "subscription_added",
		"subscription_removed"}
	channels = []string{"webhook", "log"}
)

// Validate reports every problem of c in one *ValidationError, each with its
// JSON path, or nil. It expects the defaults to be applied: a zero that means
// "default" in the file is a problem here.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// maxProblems bounds each list of problems: a file of 100 000 broken
// subscriptions must not cost a gigabyte to describe.
const maxProblems = 1000

type problemList []Problem

func (ps *problemList) add(path, format string, args ...any) {
	switch n := len(*ps); {
	case n < maxProblems:
		*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	case n == maxProblems:
		*ps = append(*ps, Problem{Message: "too many problems; the rest are not listed"})
	}
}

// problems checks c in the order of the seeds' file.
func (c *Config) problems() []Problem {
	var ps problemList
	if len(c.Subscriptions) == 0 {
		ps.add("subscriptions", "at least one subscription is required")
	}
	ids, dirs := map[string]int{}, map[string]int{}
	for i, s := range c.Subscriptions {
		p := fmt.Sprintf("subscriptions[%d]", i)
		if !namePattern.MatchString(s.ID) {
			ps.add(p+".id", "want 1 to 64 characters of A-Z a-z 0-9 _ -, got %s", quote(s.ID))
		} else if j, dup := ids[s.ID]; dup {
			ps.add(p+".id", "duplicate id %q (also subscriptions[%d])", s.ID, j)
		} else {
			ids[s.ID] = i
		}
		if !validEmail(s.Email) {
			ps.add(p+".email", "want a bare e-mail address like user@example.com")
		}
		if !slices.Contains(subscriptionTypes, s.Type) {
			ps.add(p+".type", "want one of %s, got %s", strings.Join(subscriptionTypes, ", "), quote(s.Type))
		}
		if msg := configDirProblem(s.ConfigDir); msg != "" {
			ps.add(p+".configDir", "%s", msg)
		} else if j, dup := dirs[path.Clean(s.ConfigDir)]; dup {
			ps.add(p+".configDir", "same dir as subscriptions[%d]: one Claude login cannot be two subscriptions", j)
		} else {
			dirs[path.Clean(s.ConfigDir)] = i
		}
		if !validBudget(s.WeeklyBudget) {
			ps.add(p+".weeklyBudget", "%s, got %v", budgetWant, s.WeeklyBudget)
		}
		if s.MaxClientsPerSub < 0 {
			ps.add(p+".maxClientsPerSub", "want 0 (use maxClientsPerSubscription) or more, got %d", s.MaxClientsPerSub)
		}
		if s.OAuthTokenEnv != "" && !envNamePattern.MatchString(s.OAuthTokenEnv) {
			ps.add(p+".oauthTokenEnv", "want the name of an environment variable (A-Z 0-9 _, not starting with a digit), got %s", quote(s.OAuthTokenEnv))
		}
	}
	if c.MaxClientsPerSubscription < 1 {
		ps.add("maxClientsPerSubscription", "want 1 or more, got %d", c.MaxClientsPerSubscription)
	}
	if !(c.WeeklyBudgetThreshold > 0 && c.WeeklyBudgetThreshold <= 1) {
		ps.add("weeklyBudgetThreshold", "want a fraction in (0,1], got %v", c.WeeklyBudgetThreshold)
	}
	// 0 is the default's (applyDefaults), as for a config built in code.
	if c.BlockAdmissionThreshold != 0 && !(c.BlockAdmissionThreshold > 0 && c.BlockAdmissionThreshold <= 1) {
		ps.add("blockAdmissionThreshold", "want a fraction in (0,1], got %v", c.BlockAdmissionThreshold)
	}
	r := c.Rebalancing
	if r.IntervalSeconds < 10 {
		ps.add("rebalancing.intervalSeconds", "want 10 or more seconds, got %d", r.IntervalSeconds)
	}
	if !(r.CostGapThreshold >= 0) || math.IsInf(r.CostGapThreshold, 1) {
		ps.add("rebalancing.costGapThreshold", "want 0 or more USD, got %v", r.CostGapThreshold)
	}
	if r.MaxClientsToMovePerCycle < 1 {
		ps.add("rebalancing.maxClientsToMovePerCycle", "want 1 or more, got %d", r.MaxClientsToMovePerCycle)
	}
	ps = append(ps, c.Notifications.problems()...)
	if !namePattern.MatchString(c.Pool) {
		ps.add("pool", "want 1 to 64 characters of A-Z a-z 0-9 _ -, got %s", quote(c.Pool))
	}
	if c.IdleAfterSeconds < 1 {
		ps.add("idleAfterSeconds", "want 1 or more seconds, got %d", c.IdleAfterSeconds)
	} else if c.StaleAfterSeconds <= c.IdleAfterSeconds {
		ps.add("staleAfterSeconds", "want more than idleAfterSeconds (%d), got %d", c.IdleAfterSeconds, c.StaleAfterSeconds)
	}
	// 0 is the default (as a Config built in code leaves it); New applies it.
	if c.ConversationMaxBytes != 0 && (c.ConversationMaxBytes < MinConversationBytes || c.ConversationMaxBytes > MaxConversationBytes) {
		ps.add("conversationMaxBytes", "want %d to %d bytes, got %d", MinConversationBytes, MaxConversationBytes, c.ConversationMaxBytes)
	}
	if len(c.ModelMap) > MaxModelMap {
		ps.add("modelMap", "want at most %d entries, got %d", MaxModelMap, len(c.ModelMap))
	}
	for from, to := range c.ModelMap {
		if !modelMapKey.MatchString(from) {
			ps.add("modelMap", "key %s: want 1 to 100 of A-Z a-z 0-9 . _ : / -", quote(from))
		}
		if !modelMapTarget.MatchString(to) {
			ps.add("modelMap."+from, "want opus, sonnet, haiku or a claude-* name, got %s", quote(to))
		}
	}
	return ps
}

// MaxModelMap bounds the entries of modelMap.
const MaxModelMap = 64

// modelMap's shapes: a target reaches the CLI's --model, so it is one of
// the names the gateway accepts itself (nothing that could read as a flag).
var (
	modelMapKey    = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,100}$`)
	modelMapTarget = regexp.MustCompile(`^(opus|sonnet|haiku|claude-[A-Za-z0-9._-]{1,100})$`)
)

// budgetWant describes a valid weekly budget in problem messages.
var budgetWant = "want a number of USD > 0 and at most " + strconv.FormatFloat(MaxWeeklyBudget, 'f', -1, 64)

// validBudget reports whether b is a weekly budget the scripts can hold.
func validBudget(b float64) bool { return b > 0 && b <= MaxWeeklyBudget }

func (n NotificationsConfig) problems() []Problem {
	var ps problemList
	webhookRule := -1
	for i, r := range n.Rules {
		p := fmt.Sprintf("notifications.rules[%d]", i)
		if !slices.Contains(ruleTypes, r.Type) {
			ps.add(p+".type", "want one of %s, got %s", strings.Join(ruleTypes, ", "), quote(r.Type))
		}
		if r.Type == "usage_threshold" {
			if !(r.Threshold > 0 && r.Threshold <= 1) {
				ps.add(p+".threshold", "a usage_threshold rule needs a fraction in (0,1], got %v", r.Threshold)
			}
		} else if r.Threshold != 0 {
			ps.add(p+".threshold", "only usage_threshold rules take a threshold")
		}
		if len(r.Channels) == 0 {
			ps.add(p+".channels", "want at least one of %s", strings.Join(channels, ", "))
		}
		seen := map[string]bool{}
		for j, ch := range r.Channels {
			switch {
			case !slices.Contains(channels, ch):
				ps.add(fmt.Sprintf("%s.channels[%d]", p, j), "want %s, got %s", strings.Join(channels, " or "), quote(ch))
			case seen[ch]:
				ps.add(fmt.Sprintf("%s.channels[%d]", p, j), "duplicate channel %q", ch)
			case ch == "webhook" && r.Enabled && webhookRule < 0:
				webhookRule = i
			}
			seen[ch] = true
		}
	}
	switch {
	case n.WebhookURL != "":
		if msg := webhookProblem(n.WebhookURL, n.AllowInsecureWebhooks); msg != "" {
			ps.add("notifications.webhookUrl", "%s", msg)
		}
	case webhookRule >= 0:
		ps.add("notifications.webhookUrl", "required: notifications.rules[%d] sends to the webhook channel", webhookRule)
	}
	return ps
}

// webhookProblem checks a webhook URL without ever quoting it: its path or
// user info may carry a secret.
func webhookProblem(raw string, allowInsecure bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "want an https:// URL with a host"
	}
	if u.Scheme == "https" {
		return ""
	}
	if !allowInsecure {
		return "want https:// (http:// is allowed only to a loopback host with notifications.allowInsecureWebhooks: true)"
	}
	if !loopback(u.Hostname()) {
		return "http:// is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); use https://"
	}
	return ""
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validEmail accepts a bare address (user@example.com), the form
// net/mail.ParseAddress gives back unchanged.
func validEmail(s string) bool {
	if len(s) > 254 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// configDirProblem checks a configDir before "~/" expansion.
func configDirProblem(dir string) string {
	switch {
	case dir == "":
		return "required: the Claude Code config dir of this subscription"
	case strings.ContainsRune(dir, 0):
		return "must not contain a NUL byte"
	case !filepath.IsAbs(dir) && !strings.HasPrefix(dir, "~/"):
		return "want an absolute path or ~/…, got " + quote(dir)
	}
	for _, elem := range strings.FieldsFunc(dir, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if elem == ".." {
			return "must not contain a .. element"
		}
	}
	return ""
}

// quote renders an operator's value for an error message, clipped so that a
// pasted blob does not flood the log.
func quote(s string) string {
	const max = 64
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
