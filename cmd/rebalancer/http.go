package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/rebalance"
)

// probeTimeout bounds the Redis calls of /ready and /leader.
const probeTimeout = 2 * time.Second

// leaderState is what /health and /leader say about this replica.
type leaderState interface {
	Leadership() rebalance.Leadership
}

// endpoints serve /health (alive; this replica's leadership), /ready (Redis
// answers and the pool is synced), /leader (this replica and the leader
// recorded in Redis) and /metrics (Prometheus).
type endpoints struct {
	replica string
	leader  leaderState
	pool    *pool.Pool
	synced  *atomic.Bool
}

// handler routes the endpoints and, when metrics is set, GET /metrics.
func (e *endpoints) handler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", e.health)
	mux.HandleFunc("GET /ready", e.ready)
	mux.HandleFunc("GET /leader", e.leaderInfo)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

// self is this replica's part of /health and /leader.
type self struct {
	Replica string `json:"replica"`
	Leader  bool   `json:"leader"`
	// Epoch is this replica's fencing epoch while it leads, else 0.
	Epoch int64 `json:"epoch"`
}

func (e *endpoints) self() self {
	l := e.leader.Leadership()
	s := self{Replica: e.replica, Leader: l.Leader}
	if l.Leader {
		s.Epoch = l.Epoch
	}
	return s
}

// health answers as long as the process runs; it does not touch Redis.
func (e *endpoints) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
		self
	}{"ok", e.self()})
}

func (e *endpoints) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	type reply struct {
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}
	switch {
	case e.pool.Ping(ctx) != nil:
		writeJSON(w, http.StatusServiceUnavailable, reply{"unavailable", "redis does not answer"})
	case !e.synced.Load():
		writeJSON(w, http.StatusServiceUnavailable, reply{"unavailable", "pool not synced yet"})
	default:
		writeJSON(w, http.StatusOK, reply{Status: "ready"})
	}
}

// leaderInfo is this replica plus the leader:info record: who leads the
// pool, with which epoch, since when (null when nobody leads).
func (e *endpoints) leaderInfo(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	type reply struct {
		self
		Current *rebalance.LeaderInfo `json:"current"`
		Error   string                `json:"error,omitempty"`
	}
	out := reply{self: e.self()}
	info, ok, err := e.pool.Leader().Info(ctx)
	if err != nil {
		out.Error = "redis does not answer"
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	if ok {
		out.Current = &info
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
