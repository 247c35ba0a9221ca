package secret

import "testing"

func TestAnthropicKey(t *testing.T) {
	for in, want := range map[string]string{
		"key sk-ant-api03-AbC_d-9 in text":  "key X in text",
		"token=sk-ant-oat01-xyz,next":       "token=X,next",
		"no key sk-other-123 or sk-ant":     "no key sk-other-123 or sk-ant",
		`"sk-ant-api03-a" and sk-ant-oat-b`: `"X" and X`,
	} {
		if got := AnthropicKey.ReplaceAllString(in, "X"); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}
