package tests

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func ask(t *testing.T, client openai.Client, sid, text string) (*openai.ChatCompletion, *http.Response, error) {
	t.Helper()
	var hr *http.Response
	opts := []option.RequestOption{option.WithResponseInto(&hr)}
	if sid != "" {
		opts = append(opts, option.WithHeader("X-Session-Id", sid))
	}
	cc, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(text)}}, opts...)
	return cc, hr, err
}

// TestLimitAnswerIsServedElsewhere (issue 3, "must show" 2): a subscription
// whose CLI answers with a usage limit is marked limited until the reset it
// gave, a limit_reached event is written, the request is answered by another
// subscription, and no new session goes to the limited one.
func TestLimitAnswerIsServedElsewhere(t *testing.T) {
	tests := []struct {
		mode     string
		wantSecs float64 // the exact reset, from now; 0: only "in the future, within maxSecs"
		maxSecs  float64
	}{
		{mode: "limit-epoch 7200", wantSecs: 7200},
		{mode: "limit-9am", maxSecs: 24 * 3600},
		{mode: "limit-weekly", maxSecs: 24 * 3600},
		{mode: "limit-429", maxSecs: 5 * 3600},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			c := startCluster(t, clusterOpts{modes: map[string]string{"sub1": tc.mode}})
			start := time.Now()
			// A fresh pool binds its first session to sub1 (ties go by id).
			cc, hr, err := ask(t, c.replicas[0].client(clientKey), "limited-first", "hello")
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if cc.Choices[0].Message.Content != "echo: hello" || hr.Header.Get("X-AuthPool-Allocation") != "subscription" {
				t.Errorf("answer %q via %q", cc.Choices[0].Message.Content, hr.Header.Get("X-AuthPool-Allocation"))
			}
			if n := len(c.calls("sub1")); n != 1 {
				t.Fatalf("sub1 calls = %d, want the one that hit the limit", n)
			}
			if got := c.session("limited-first")["sub"]; got != "sub2" {
				t.Errorf("session on %q, want sub2", got)
			}
			st := c.debugStatus(1)["sub1"]
			until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st["until"]))
			if st["status"] != "limited" || err != nil {
				t.Fatalf("sub1 = %v", st)
			}
			// The turn that hit the limit is counted with what it reported.
			if st["requests"] != 1.0 || st["tokens"] == 0.0 {
				t.Errorf("sub1 counted %v requests, %v tokens; want the limited turn's", st["requests"], st["tokens"])
			}
			secs := until.Sub(start).Seconds()
			if tc.wantSecs > 0 && math.Abs(secs-tc.wantSecs) > 3 {
				t.Errorf("limited until %v (%.0f s), want the parsed reset in %.0f s", until, secs, tc.wantSecs)
			}
			if tc.maxSecs > 0 && (secs <= 0 || secs > tc.maxSecs) {
				t.Errorf("limited until %v (%.0f s from now)", until, secs)
			}
			if ev := c.events("limit_reached"); len(ev) != 1 || ev[0]["subscriptionId"] != "sub1" {
				t.Errorf("limit_reached events = %v", ev)
			}
			// New sessions, on both replicas, stay away from sub1.
			for i := 0; i < 6; i++ {
				if _, _, err := ask(t, c.replicas[i%2].client(clientKey), fmt.Sprintf("later-%d", i), "hi"); err != nil {
					t.Fatalf("later request %d: %v", i, err)
				}
			}
			if n := len(c.calls("sub1")); n != 1 {
				t.Errorf("sub1 got %d more calls while limited", n-1)
			}
		})
	}
}

// TestEverySubscriptionLimited (issue 3, "must show" 3).
func TestEverySubscriptionLimited(t *testing.T) {
	limits := map[string]string{"sub1": "limit-epoch 600", "sub2": "limit-epoch 900"}

	t.Run("fallback", func(t *testing.T) {
		api := newMessagesAPI(t)
		c := startCluster(t, clusterOpts{modes: limits, fallbackURL: api.srv.URL})
		client := c.replicas[0].client(clientKey)
		cc, hr, err := ask(t, client, "fb", "Who answers?")
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		if hr.Header.Get("X-AuthPool-Allocation") != "fallback" || cc.Choices[0].Message.Content != "fallback: Who answers?" {
			t.Errorf("answer %q via %q", cc.Choices[0].Message.Content, hr.Header.Get("X-AuthPool-Allocation"))
		}
		for _, s := range c.subs {
			if st := c.debugStatus(0)[s.id]; st["status"] != "limited" {
				t.Errorf("%s = %v", s.id, st["status"])
			}
		}
		// Streaming through the fallback, from the other replica.
		other := c.replicas[1].client(clientKey)
		stream := other.Chat.Completions.NewStreaming(context.Background(),
			openai.ChatCompletionNewParams{Model: "haiku", Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("sys"), openai.UserMessage("one two three")}},
			option.WithHeader("X-Session-Id", "fb-stream"), option.WithResponseInto(&hr))
		var text string
		for stream.Next() {
			for _, ch := range stream.Current().Choices {
				text += ch.Delta.Content
			}
		}
		if err := stream.Err(); err != nil || text != "fallback: one two three" || hr.Header.Get("X-AuthPool-Allocation") != "fallback" {
			t.Errorf("stream: %q %v via %q", text, err, hr.Header.Get("X-AuthPool-Allocation"))
		}
		reqs := api.seen()
		if len(reqs) != 2 || reqs[0].apiKey != fallbackKey || reqs[1].Model != "claude-haiku-4-5" || reqs[1].System != "sys" || !reqs[1].Stream {
			t.Errorf("fallback API saw %+v", reqs)
		}
		fb, err := c.rdb.HGetAll(context.Background(), c.keys.Fallback()).Result()
		if err != nil || fb["requests"] != "2" {
			t.Errorf("fallback usage = %v %v, want 2 requests settled", fb, err)
		}
		if ev := c.events("failover"); len(ev) == 0 {
			t.Error("no failover event")
		}
	})

	t.Run("fallback off", func(t *testing.T) {
		c := startCluster(t, clusterOpts{modes: limits, fallbackOff: true})
		_, _, err := ask(t, c.replicas[1].client(clientKey), "nofb", "hello")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("err = %v, want a 503", err)
		}
		if apiErr.StatusCode != 503 || apiErr.Type != "pool_exhausted" {
			t.Errorf("error = %d %s: %s", apiErr.StatusCode, apiErr.Type, apiErr.Message)
		}
		ra, err := strconv.Atoi(apiErr.Response.Header.Get("Retry-After"))
		if err != nil || ra < 590 || ra > 601 {
			t.Errorf("Retry-After = %q, want about 600 (the earliest reset)", apiErr.Response.Header.Get("Retry-After"))
		}
		// The next request does not even start a CLI.
		before := len(c.calls("sub1")) + len(c.calls("sub2"))
		_, _, err = ask(t, c.replicas[0].client(clientKey), "nofb-2", "hello")
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
			t.Errorf("second request: %v", err)
		}
		if after := len(c.calls("sub1")) + len(c.calls("sub2")); after != before {
			t.Errorf("CLI ran %d times for an exhausted pool", after-before)
		}
		if !strings.Contains(apiErr.Message, "exhausted") {
			t.Errorf("message = %q", apiErr.Message)
		}
	})
}
