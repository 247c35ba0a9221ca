package gateway

import (
	"strings"
	"testing"

	"github.com/authpool/authpool/pkg/backend"
)

func TestTranslation(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		resume     string
		wantSystem string
		wantPrompt string
		wantModel  string
		wantMsgs   int
		canResume  bool
	}{
		{name: "one user message", body: `{"messages":[{"role":"user","content":"Hello"}]}`,
			wantPrompt: "Hello", wantMsgs: 1},
		{name: "system messages join into the system prompt",
			body:       `{"model":"opus","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"Use French."},{"role":"user","content":"Hi"}]}`,
			wantSystem: "Be brief.\n\nUse French.", wantPrompt: "Hi", wantModel: "opus", wantMsgs: 1},
		{name: "text parts join with newlines",
			body:       `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
			wantPrompt: "a\nb", wantMsgs: 1},
		{name: "earlier turns become a transcript ahead of the new message",
			body:       `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"}]}`,
			wantPrompt: "<conversation_history>\n<user>\nWhat is 2+2?\n</user>\n<assistant>\n4\n</assistant>\n</conversation_history>\n\nAnd 3+3?",
			wantModel:  "claude-sonnet-4-5", wantMsgs: 3, canResume: true},
		{name: "with --resume only the messages after the last answer are sent",
			body:       `{"messages":[{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"And 3+3?"},{"role":"user","content":"And 4+4?"}]}`,
			resume:     "cli-1",
			wantPrompt: "And 3+3?\n\nAnd 4+4?", wantMsgs: 4, canResume: true},
		{name: "a null assistant content is an empty turn",
			body:       `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":null},{"role":"user","content":"b"}]}`,
			resume:     "cli-1",
			wantPrompt: "b", wantMsgs: 2, canResume: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := decodeChat([]byte(tc.body))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			tr, err := validate(req)
			if err != nil {
				t.Fatalf("validate: %v", err)
			}
			if got := len(tr.history) > 0; got != tc.canResume {
				t.Errorf("has history = %v, want %v", got, tc.canResume)
			}
			r := tr.request(tc.resume)
			if r.SystemPrompt != tc.wantSystem {
				t.Errorf("system = %q, want %q", r.SystemPrompt, tc.wantSystem)
			}
			if r.Prompt != tc.wantPrompt {
				t.Errorf("prompt = %q, want %q", r.Prompt, tc.wantPrompt)
			}
			if r.ResumeSession != tc.resume {
				t.Errorf("resume = %q, want %q", r.ResumeSession, tc.resume)
			}
			if r.Model != tc.wantModel {
				t.Errorf("model = %q, want %q", r.Model, tc.wantModel)
			}
			if len(r.Messages) != tc.wantMsgs {
				t.Errorf("messages = %d, want %d", len(r.Messages), tc.wantMsgs)
			}
			for _, m := range r.Messages {
				if m.Role != "user" && m.Role != "assistant" {
					t.Errorf("fallback transcript has role %q", m.Role)
				}
			}
		})
	}
}

func TestAcceptedButNotApplied(t *testing.T) {
	body := `{"messages":[{"role":"user","content":"x","name":"bob"}],"temperature":0.2,"top_p":0.9,"stop":["\n"],
		"max_tokens":100,"presence_penalty":0,"frequency_penalty":0,"seed":1,"user":"u","n":1,"tools":[],
		"tool_choice":"none","response_format":{"type":"text"},"stream_options":{"include_usage":true},"stream":true,
		"logprobs":false,"modalities":["text"],"priority":"high","session_id":"s-1"}`
	req, err := decodeChat([]byte(body))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	tr, err := validate(req)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	r := tr.request("")
	want := backend.Request{Prompt: "x", Stream: true, MaxTokens: 100, Messages: []backend.Message{{Role: "user", Content: "x"}}}
	if r.Prompt != want.Prompt || r.Stream != want.Stream || r.MaxTokens != want.MaxTokens || len(r.Messages) != 1 {
		t.Errorf("request = %+v, want %+v", r, want)
	}
	if !tr.usage || tr.priority != "high" {
		t.Errorf("usage = %v priority = %q", tr.usage, tr.priority)
	}
}

func FuzzDecodeChat(f *testing.F) {
	f.Add(`{"messages":[{"role":"user","content":"Hello"}]}`)
	f.Add(`{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true}`)
	f.Add(`{"messages":[{"role":"assistant","content":null}]}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decodeChat([]byte(body))
		if err != nil {
			if classify(err).status != 400 {
				t.Fatalf("decode error maps to %d", classify(err).status)
			}
			return
		}
		tr, err := validate(req)
		if err != nil {
			if classify(err).status != 400 {
				t.Fatalf("validation error %v maps to %d", err, classify(err).status)
			}
			return
		}
		if strings.TrimSpace(tr.newTurn) == "" {
			t.Fatal("a valid request has an empty new turn")
		}
	})
}
