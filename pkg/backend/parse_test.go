package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureDir holds the CLI output samples shared by every package.
const fixtureDir = "../../../shared/fixtures/claude-cli"

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	if _, err := os.Stat(fixtureDir); err != nil {
		t.Skipf("CLI fixtures not found at %s (the shared fixtures dir sits next to the repository): %v", fixtureDir, err)
	}
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// initLine is the init line of a sandboxed run: no tools, no MCP servers.
const initLine = `{"type":"system","subtype":"init","session_id":"s0","tools":[],"mcp_servers":[],"model":"claude-sonnet-4-5"}`

// parseResult decodes a result object (the json format's whole output, on
// one line or many) as the last line of a stream that began with initLine.
func parseResult(out []byte) (*Result, error) {
	d := NewStreamDecoder(nil)
	if err := d.Line([]byte(initLine)); err != nil {
		return nil, err
	}
	var obj bytes.Buffer
	if json.Compact(&obj, out) != nil {
		obj.Reset()
		obj.Write(out)
	}
	for _, line := range bytes.Split(obj.Bytes(), []byte("\n")) {
		if err := d.Line(line); err != nil {
			return nil, err
		}
	}
	return d.Result()
}

func TestResultFixtures(t *testing.T) {
	res, err := parseResult(fixture(t, "result-success.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Text: "Hello! How can I help you today?", CLISessionID: "12577247-1838-42f6-8bfb-76c13cad5936",
		StopReason: "end_turn", Model: "claude-sonnet-4-5", CostUSD: 0.0123, DurationMS: 812, NumTurns: 1,
		Usage: Usage{InputTokens: 12, OutputTokens: 7}, Subtype: "success"}
	mu := res.ModelUsage["claude-sonnet-4-5"]
	res.ModelUsage = nil
	if !reflect.DeepEqual(*res, want) {
		t.Errorf("success result:\n got %+v\nwant %+v", *res, want)
	}
	if want := (ModelUsage{InputTokens: 12, OutputTokens: 7, CostUSD: 0.0123, ContextWindow: 200000}); mu != want {
		t.Errorf("modelUsage (an object keyed by model) = %+v, want %+v", mu, want)
	}

	res, err = parseResult(fixture(t, "result-usage-limit.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError || res.Text != "Claude AI usage limit reached|1795338158" || res.CostUSD != 0 {
		t.Errorf("limit result: IsError=%v Text=%q Cost=%v", res.IsError, res.Text, res.CostUSD)
	}
	le, ok := DetectLimit(res.Text, fixedNow)
	if !ok || le.ResetAt.Unix() != 1795338158 {
		t.Errorf("DetectLimit(limit fixture) = %+v, %v; want reset at 1795338158", le, ok)
	}
}

func TestResultRejects(t *testing.T) {
	for _, tc := range []struct{ name, out string }{
		{"empty", ""},
		{"not json", "Error: something went wrong"},
		{"not a result", `{"type":"assistant","message":{}}`},
		{"negative cost", `{"type":"result","total_cost_usd":-1}`},
		{"negative tokens", `{"type":"result","usage":{"input_tokens":-5}}`},
		{"negative model usage", `{"type":"result","modelUsage":{"m":{"costUSD":-0.1}}}`},
		{"modelUsage as array (the old bug)", `{"type":"result","modelUsage":[{"model":"x"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res, err := parseResult([]byte(tc.out)); !errors.Is(err, ErrBackend) {
				t.Errorf("parseResult(%q) = %+v, %v; want ErrBackend", tc.out, res, err)
			}
		})
	}
}

func TestStreamDecoderSkipsWarnings(t *testing.T) {
	var obj bytes.Buffer // the object on one line, as the CLI prints it
	if err := json.Compact(&obj, fixture(t, "result-success.json")); err != nil {
		t.Fatal(err)
	}
	d := NewStreamDecoder(nil)
	for _, line := range []string{"Warning: config dir is world-readable", initLine, obj.String()} {
		if err := d.Line([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := d.Result()
	if err != nil || res.Text != "Hello! How can I help you today?" {
		t.Fatalf("warning + result = %+v, %v", res, err)
	}
}

func TestMainModelIsTheCostliest(t *testing.T) {
	res, err := parseResult([]byte(`{"type":"result","modelUsage":{
		"claude-haiku-4-5":{"costUSD":0.001,"outputTokens":900},
		"claude-opus-4-1":{"costUSD":0.2,"outputTokens":100}}}`))
	if err != nil || res.Model != "claude-opus-4-1" {
		t.Fatalf("Model = %q, %v; want claude-opus-4-1", res.Model, err)
	}
}

func TestStreamDecoderFixture(t *testing.T) {
	var deltas []string
	d := NewStreamDecoder(func(s string) { deltas = append(deltas, s) })
	for _, line := range bytes.Split(fixture(t, "stream-success.jsonl"), []byte("\n")) {
		if err := d.Line(line); err != nil {
			t.Fatal(err)
		}
	}
	res, err := d.Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Hello!", " How can", " I help", " you today?"}; strings.Join(deltas, "|") != strings.Join(want, "|") {
		t.Errorf("deltas = %q, want %q", deltas, want)
	}
	if res.Text != strings.Join(deltas, "") || res.CLISessionID != "aa94803d-c2bb-4b0c-b6e0-d7c493b9d10b" ||
		res.StopReason != "end_turn" || res.Model != "claude-sonnet-4-5" || res.CostUSD != 0.0123 {
		t.Errorf("result = %+v", res)
	}
}

func TestStreamDecoderRelaysOnlyTextDeltas(t *testing.T) {
	// The CLI reports a limit as a synthetic assistant message with no
	// stream events: it must not reach the client as an answer.
	var deltas []string
	d := NewStreamDecoder(func(s string) { deltas = append(deltas, s) })
	for _, line := range []string{
		`{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5"}`,
		`{"type":"assistant","session_id":"s1","message":{"model":"<synthetic>","content":[{"type":"text","text":"Claude AI usage limit reached|1766502000"}]}}`,
		`{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1766502000","session_id":"s1"}`,
	} {
		if err := d.Line([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := d.Result()
	if err != nil || !res.IsError || res.CLISessionID != "s1" {
		t.Fatalf("Result() = %+v, %v", res, err)
	}
	if len(deltas) != 0 {
		t.Errorf("deltas = %q, want none", deltas)
	}
}

func TestStreamDecoderWithoutResult(t *testing.T) {
	d := NewStreamDecoder(nil)
	_ = d.Line([]byte(`{"type":"system","subtype":"init","session_id":"s"}`))
	_ = d.Line([]byte(`Claude AI usage limit reached|1766502000`))
	if _, err := d.Result(); !errors.Is(err, ErrBackend) {
		t.Errorf("Result() without a result line = %v, want ErrBackend", err)
	}
	if !strings.Contains(d.text(), "usage limit reached") {
		t.Errorf("stray text %q lost the limit message", d.text())
	}
}

func TestReadLinesLongLines(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // longer than the reader's buffer
	var got []int
	err := readLines(strings.NewReader("a\n"+long+"\nlast"), func(l []byte) error {
		got = append(got, len(bytes.TrimRight(l, "\n")))
		return nil
	})
	if err != nil || len(got) != 3 || got[0] != 1 || got[1] != len(long) || got[2] != 4 {
		t.Fatalf("readLines = %v, %v; want lengths [1 %d 4]", got, err, len(long))
	}
	tooLong := strings.NewReader(strings.Repeat("y", maxStreamLine+1))
	if err := readLines(tooLong, func([]byte) error { return nil }); !errors.Is(err, errLineTooLong) {
		t.Fatalf("readLines(over %d bytes) = %v, want errLineTooLong", maxStreamLine, err)
	}
}

func FuzzStreamDecoder(f *testing.F) {
	for _, name := range []string{"result-success.json", "result-usage-limit.json", "stream-success.jsonl"} {
		if b, err := os.ReadFile(filepath.Join(fixtureDir, name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"type":"result","modelUsage":{"a":{},"b":{"costUSD":1}}}`))
	f.Add([]byte("warning\n{\"type\":\"result\"}"))
	f.Fuzz(func(t *testing.T, out []byte) {
		res, err := parseResult(out)
		if (res == nil) == (err == nil) {
			t.Fatalf("parseResult: result %v with error %v", res, err)
		}
		if err != nil && !errors.Is(err, ErrBackend) {
			t.Fatalf("error %v does not wrap ErrBackend", err)
		}
		relayed := false
		d := NewStreamDecoder(func(string) { relayed = true })
		for _, line := range bytes.Split(out, []byte("\n")) {
			if err := d.Line(line); errors.Is(err, ErrSandbox) {
				break
			}
		}
		if relayed && !d.initSeen {
			t.Fatal("text was relayed before a clean init line")
		}
		_, _ = d.Result()
	})
}
