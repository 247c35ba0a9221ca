package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// phaseOrder is the order of the gateway's phases (pkg/gateway timings);
// each is the time from the milestone before it to its own.
var phaseOrder = []string{"in", "auth", "decode", "alloc", "convo", "spawn", "first_byte", "exit", "parse",
	"store", "encode", "settle"}

// phaseHelp says what each phase holds.
var phaseHelp = map[string]string{
	"in":         "HTTP read, routing, tracing/metrics/log middleware, request id",
	"auth":       "API key check and the rate limit",
	"decode":     "body decoded and validated, session id",
	"alloc":      "wait for the session's previous settle, then the allocate script",
	"convo":      "stored conversation read, backend wrapper",
	"spawn":      "CLI working dir check, fork/exec of the CLI",
	"first_byte": "the CLI starts up to its first line",
	"exit":       "the CLI's output read to its exit",
	"parse":      "result parsed, backend returns",
	"store":      "the turn stored in the conversation, its CLI session recorded",
	"encode":     "answer encoded, written and flushed",
	"settle":     "after the answer: the settle script (usage, failure count)",
}

// offsets are the sizes of the replicas' logs, to read what a phase added.
func (e *env) offsets() []int64 {
	out := make([]int64, len(e.logs))
	for i, p := range e.logs {
		if fi, err := os.Stat(p); err == nil {
			out[i] = fi.Size()
		}
	}
	return out
}

// phases reads the "request phases" lines the given replicas logged since
// from and returns each phase's durations (ms), sorted.
func (e *env) phases(from []int64, replicas ...int) map[string][]float64 {
	out := map[string][]float64{}
	for _, i := range replicas {
		f, err := os.Open(e.logs[i])
		if err != nil {
			continue
		}
		if i < len(from) {
			_, _ = f.Seek(from[i], io.SeekStart)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(`"request phases"`)) {
				continue
			}
			var line struct {
				Context map[string]any `json:"context"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			for k, v := range line.Context {
				if name, ok := strings.CutSuffix(k, "_ms"); ok {
					if f, ok := v.(float64); ok {
						out[name] = append(out[name], f)
					}
				}
			}
		}
		f.Close()
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func median(v []float64) float64 { return quantile(v, 0.5) }

// quantile is the q-quantile (nearest rank) of sorted v.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[max(0, min(int(q*float64(len(v))+0.5)-1, len(v)-1))]
}

// profile fetches a CPU profile of replica 0 over d into path.
func (e *env) profile(path string, d time.Duration) error {
	secs := max(1, int(d/time.Second))
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", e.urls[0], secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("profile: status %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileTop is `go tool pprof -top -cum` of the profile: its n heaviest
// functions by cumulative time, so the request path's own steps show.
func (e *env) profileTop(path string, n int) (string, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", fmt.Sprintf("-nodecount=%d", n), e.api, path).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w", err)
	}
	// Keep the summary and the table; drop the file and build lines.
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") ||
			strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n"), nil
}
