package backend

import (
	"testing"
	"time"
)

// fixedNow is Tuesday 23 December 2025, 12:00 UTC: 06:00 in Chicago, 13:00
// in Paris, 20:00 in Shanghai.
var fixedNow = time.Date(2025, 12, 23, 12, 0, 0, 0, time.UTC)

func TestDetectLimit(t *testing.T) {
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	dstNow := time.Date(2026, 3, 8, 7, 30, 0, 0, time.UTC) // 01:30 CST; clocks go to CDT at 02:00 local
	for _, tc := range []struct {
		name  string
		text  string
		now   time.Time
		reset time.Time // zero: no reset given
	}{
		{"epoch", "Claude AI usage limit reached|1766502000", fixedNow, time.Unix(1766502000, 0)},
		{"epoch in ms", "Claude AI usage limit reached|1766502000000", fixedNow, time.Unix(1766502000, 0)},
		{"epoch on stderr among other lines", "Error: request failed\nClaude AI usage limit reached|1766502000\nat x.js:1", fixedNow, time.Unix(1766502000, 0)},
		{"9am Chicago, later today", "Claude usage limit reached. Your limit will reset at 9am (America/Chicago).", fixedNow, utc(2025, 12, 23, 15, 0)},
		{"3:20pm Shanghai, passed today: tomorrow", "You've hit your limit · resets 3:20pm (Asia/Shanghai)", fixedNow, utc(2025, 12, 24, 7, 20)},
		{"session limit Paris", "You've hit your session limit · resets 5:10pm (Europe/Paris)", fixedNow, utc(2025, 12, 23, 16, 10)},
		{"weekly limit Paris", "You've hit your weekly limit · resets 5:10pm (Europe/Paris)", fixedNow, utc(2025, 12, 23, 16, 10)},
		{"curly apostrophe", "You’ve hit your limit · resets 3:20pm (Asia/Shanghai)", fixedNow, utc(2025, 12, 24, 7, 20)},
		{"upper-case PM", "You've hit your limit · resets 3:20PM (Asia/Shanghai)", fixedNow, utc(2025, 12, 24, 7, 20)},
		{"unknown zone counts as UTC", "You've hit your limit · resets 3pm (Mars/Olympus_Mons)", fixedNow, utc(2025, 12, 23, 15, 0)},
		{"12am is midnight", "You've hit your limit · resets 12am (UTC)", fixedNow, utc(2025, 12, 24, 0, 0)},
		{"12pm now: the next one", "You've hit your limit · resets 12pm (UTC)", fixedNow, utc(2025, 12, 24, 12, 0)},
		{"24-hour clock", "You've hit your limit · resets 15:20 (Asia/Tokyo)", fixedNow, utc(2025, 12, 24, 6, 20)},
		{"across the DST change", "Claude usage limit reached. Your limit will reset at 9am (America/Chicago).", dstNow, utc(2026, 3, 8, 14, 0)},
		{"dated, next year", "Weekly limit reached ∙ resets Dec 20, 10am (UTC)", fixedNow, utc(2026, 12, 20, 10, 0)},
		{"dated, this season", "You've hit your weekly limit · resets Jan 2 at 9am (America/New_York)", fixedNow, utc(2026, 1, 2, 14, 0)},
		{"429 rate_limit_error", `API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}`, fixedNow, time.Time{}},
		{"rate_limit_error type only", `{"type":"error","error":{"type":"rate_limit_error"}}`, fixedNow, time.Time{}},
		{"limit without reset", "Claude AI usage limit reached", fixedNow, time.Time{}},
		{"bad hour", "You've hit your limit · resets 13pm (UTC)", fixedNow, time.Time{}},
		{"bare number is no time", "You've hit your limit · resets 5 (UTC)", fixedNow, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			le, ok := DetectLimit(tc.text, tc.now)
			if !ok {
				t.Fatalf("DetectLimit(%q) found no limit", tc.text)
			}
			if !le.ResetAt.Equal(tc.reset) {
				t.Errorf("ResetAt = %v, want %v", le.ResetAt, tc.reset)
			}
			if le.Message == "" {
				t.Error("Message is empty")
			}
		})
	}
}

func TestDetectLimitWithoutZoneUsesLocal(t *testing.T) {
	le, ok := DetectLimit("You've hit your limit · resets 3:20pm", fixedNow)
	if !ok {
		t.Fatal("no limit found")
	}
	if l := le.ResetAt.In(time.Local); l.Hour() != 15 || l.Minute() != 20 || !le.ResetAt.After(fixedNow) ||
		le.ResetAt.Sub(fixedNow) > 25*time.Hour {
		t.Errorf("ResetAt = %v, want the next 15:20 local after %v", le.ResetAt, fixedNow)
	}
}

func TestDetectLimitIgnoresOtherText(t *testing.T) {
	for _, text := range []string{
		"",
		"Hello! How can I help you today?",
		"API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}",
		"Invalid API key · Please run /login",
		"No conversation found with session ID: 1234",
		"The speed limit on this road is 50.",
	} {
		if le, ok := DetectLimit(text, fixedNow); ok {
			t.Errorf("DetectLimit(%q) = %+v, want no limit", text, le)
		}
	}
}

func TestDetectAuth(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"Invalid API key · Please run /login", true},
		{"OAuth token has expired. Please obtain a new token or refresh your existing token.", true},
		{`Failed to authenticate. API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`, true},
		{"OAuth session expired and could not be refreshed", true},
		{`API Error: 403 {"type":"error","error":{"type":"permission_error"}}`, true},
		{"Claude AI usage limit reached|1766502000", false},
		{"Hello! How can I help you today?", false},
		{"API Error: 500 internal", false},
		{"", false},
	} {
		if got := DetectAuth(tc.text); got != tc.want {
			t.Errorf("DetectAuth(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func FuzzDetectLimit(f *testing.F) {
	for _, s := range []string{
		"Claude AI usage limit reached|1766502000",
		"Claude AI usage limit reached|9999999999999",
		"Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
		"You've hit your limit · resets 3:20pm (Asia/Shanghai)",
		"You've hit your session limit · resets 5:10pm (Europe/Paris)",
		"Weekly limit reached ∙ resets Feb 31, 10am (../../etc/passwd)",
		`API Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}`,
		"Invalid API key · Please run /login",
	} {
		f.Add(s, int64(1766491200))
	}
	f.Fuzz(func(t *testing.T, text string, now int64) {
		le, ok := DetectLimit(text, time.Unix(now%(1<<40), 0))
		if ok != (le != nil) {
			t.Fatalf("DetectLimit = %v, %v", le, ok)
		}
		_ = DetectAuth(text)
	})
}
