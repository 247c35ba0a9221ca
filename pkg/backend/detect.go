package backend

import (
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // reset times name IANA zones; hosts without tzdata must still resolve them
)

// The limit messages of the CLI (fixtures/claude-cli/README.md), in the order
// they are tried.
var (
	// Claude AI usage limit reached|1766502000 (Unix seconds; milliseconds tolerated).
	limitEpoch = regexp.MustCompile(`(?i)Claude AI usage limit reached\|(\d{1,13})`)
	// Claude usage limit reached. Your limit will reset at 9am (America/Chicago).
	// You've hit your [session|weekly] limit · resets 3:20pm (Asia/Shanghai)
	// Weekly limit reached ∙ resets Oct 9, 10am (…)
	limitPhrase = regexp.MustCompile(`(?i)usage limit reached|hit your (?:[a-z0-9-]+ )?limit\b|` +
		`\b(?:session|weekly|daily|monthly|5-hour|opus|sonnet) limit reached\b`)
	resetClause = regexp.MustCompile(`(?i)\breset(?:s)?(?: at)?\s+` +
		`(?:([a-z]{3,9})\.?\s+(\d{1,2}),?\s+(?:at\s+)?)?` + // optional date: Oct 9[,] [at]
		`(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?` + // 9am, 3:20pm, 15:20
		`(?:\s*\(([A-Za-z0-9_+\-/]{1,64})\))?`) // (Zone)
	// API Error: 429 {"type":"error","error":{"type":"rate_limit_error",...}}
	limit429 = regexp.MustCompile(`(?i)API Error:\s*429\b|"type"\s*:\s*"rate_limit_error"`)
)

// resetWindow is how far after a limit phrase its reset clause may start.
const resetWindow = 120

// DetectLimit reports whether text (an is_error result or stderr of the CLI)
// says that a usage limit was reached, and when it resets. A reset given as a
// wall-clock time ("9am (America/Chicago)") resolves to the next such instant
// after now in that zone (an unknown zone counts as UTC, a missing one as the
// local zone, where the CLI runs); a date ("Oct 9, 10am") to its next
// occurrence after now. A message without a reset (429 rate_limit_error)
// gives a zero ResetAt.
func DetectLimit(text string, now time.Time) (*LimitError, bool) {
	if m := limitEpoch.FindStringSubmatchIndex(text); m != nil {
		n, _ := strconv.ParseInt(text[m[2]:m[3]], 10, 64)
		if n > 1e11 { // milliseconds
			n /= 1000
		}
		return &LimitError{ResetAt: time.Unix(n, 0).UTC(), Message: lineAt(text, m[0])}, true
	}
	if loc := limitPhrase.FindStringIndex(text); loc != nil {
		le := &LimitError{Message: lineAt(text, loc[0])}
		rest := text[loc[1]:]
		if m := resetClause.FindStringSubmatchIndex(rest); m != nil && m[0] <= resetWindow {
			le.ResetAt = resolveReset(rest, m, now)
		}
		return le, true
	}
	if loc := limit429.FindStringIndex(text); loc != nil {
		return &LimitError{Message: lineAt(text, loc[0])}, true
	}
	return nil, false
}

// resolveReset turns the groups of resetClause into an instant; zero when
// they do not make a time.
func resolveReset(s string, m []int, now time.Time) time.Time {
	group := func(i int) string {
		if m[2*i] < 0 {
			return ""
		}
		return s[m[2*i]:m[2*i+1]]
	}
	hour, _ := strconv.Atoi(group(3))
	minute := 0
	if g := group(4); g != "" {
		minute, _ = strconv.Atoi(g)
	}
	if minute > 59 {
		return time.Time{}
	}
	switch ampm := strings.ToLower(strings.ReplaceAll(group(5), ".", "")); ampm {
	case "am", "pm":
		if hour < 1 || hour > 12 {
			return time.Time{}
		}
		hour %= 12
		if ampm == "pm" {
			hour += 12
		}
	default:
		// A bare number is not a time ("resets 5"); 15:20 is.
		if hour > 23 || group(4) == "" {
			return time.Time{}
		}
	}
	loc := time.Local
	if z := group(6); z != "" {
		var err error
		if loc, err = time.LoadLocation(z); err != nil {
			loc = time.UTC
		}
	}
	if group(1) != "" {
		month, ok := monthOf(group(1))
		day, _ := strconv.Atoi(group(2))
		if !ok || day < 1 || day > 31 {
			return time.Time{}
		}
		return nextDate(now, loc, month, day, hour, minute)
	}
	return nextClock(now, loc, hour, minute)
}

// nextClock is the first hour:minute in loc after now.
func nextClock(now time.Time, loc *time.Location, hour, minute int) time.Time {
	n := now.In(loc)
	for d := 0; d < 3; d++ { // a DST gap can push one day's candidate back before now
		t := time.Date(n.Year(), n.Month(), n.Day()+d, hour, minute, 0, 0, loc)
		if t.After(now) {
			return t
		}
	}
	return time.Time{}
}

// nextDate is the first month/day hour:minute in loc after now.
func nextDate(now time.Time, loc *time.Location, month time.Month, day, hour, minute int) time.Time {
	n := now.In(loc)
	t := time.Date(n.Year(), month, day, hour, minute, 0, 0, loc)
	if !t.After(now) {
		t = time.Date(n.Year()+1, month, day, hour, minute, 0, 0, loc)
	}
	return t
}

func monthOf(s string) (time.Month, bool) {
	s = strings.ToLower(s)
	for m := time.January; m <= time.December; m++ {
		name := strings.ToLower(m.String())
		if s == name || (len(s) >= 3 && strings.HasPrefix(name, s)) {
			return m, true
		}
	}
	return 0, false
}

// lineAt is the line of s around offset i, clipped for an error message.
func lineAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := len(s)
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		end = i + j
	}
	return excerpt(s[start:end])
}

// authPattern matches the CLI's authentication failures.
var authPattern = regexp.MustCompile(`(?i)invalid api key|please run /login|oauth token has expired|` +
	`oauth session expired|oauth token (?:was )?revoked|failed to authenticate|api error:\s*40[13]\b|` +
	`"type"\s*:\s*"authentication_error"`)

// DetectAuth reports whether text (an is_error result or stderr of the CLI)
// says that the credentials were refused: `Invalid API key · Please run
// /login`, `OAuth token has expired`, `Failed to authenticate. API Error:
// 401 …`, `OAuth session expired and could not be refreshed`.
func DetectAuth(text string) bool { return authPattern.MatchString(text) }

// sessionNotFound is the CLI's answer to --resume of a session its config
// dir does not hold.
const sessionNotFound = "No conversation found with session ID"

func detectSessionNotFound(text string) bool { return strings.Contains(text, sessionNotFound) }
