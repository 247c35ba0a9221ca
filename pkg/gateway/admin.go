package gateway

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/pool"
)

// readyTimeout bounds the readiness probe's Redis calls.
const readyTimeout = 2 * time.Second

// health answers while the process runs.
func (s *Server) health(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// ready answers 200 when Redis answers and, with a pool, its scripts are
// loaded and its subscriptions synced (pool.Ready). It only reads: what a
// Redis restart took (the scripts, the subscriptions) the replica's healer
// writes back within HealInterval, and the next allocation would too.
func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
	defer cancel()
	fail := func(reason string) {
		c.Header("Retry-After", retryAfterSeconds(defaultRetry))
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": reason})
	}
	if s.pool == nil {
		if err := s.rdb.Ping(ctx).Err(); err != nil {
			fail("redis does not answer")
			return
		}
	} else if err := s.pool.Ready(ctx); err != nil {
		switch {
		case errors.Is(err, pool.ErrScriptsNotLoaded):
			fail("pool scripts are not loaded")
		case errors.Is(err, pool.ErrNotSynced):
			fail("pool not synced")
		default:
			fail("redis does not answer")
		}
		return
	}
	body := gin.H{"status": "ready", "pool": s.pool != nil}
	if s.pool != nil {
		// Still ready: a replica on an older config serves what it knows;
		// behind tells the operator its rollout is not finished.
		body["behind"], body["configVersion"] = s.pool.CheckBehind(ctx), s.pool.Config().Version().Short()
	}
	c.JSON(http.StatusOK, body)
}

// deleteSession ends a session (DELETE /v1/sessions/:id): its subscription
// gets the slot back, and its binding and stored conversation are gone. Only the API key that created the session may end it;
// for another key it does not exist (404 session_not_found).
func (s *Server) deleteSession(c *gin.Context) {
	sid := c.Param("id")
	if !pool.ValidSessionID(sid) {
		writeError(c, pool.ErrInvalidSession)
		return
	}
	if s.pool == nil {
		writeError(c, pool.ErrSessionNotFound)
		return
	}
	// A turn of the session this replica answered may still be settling:
	// release after it, or its settle would find the session gone.
	s.pending.wait(c.Request.Context(), sid, pendingWait)
	sub, err := s.pool.ReleaseAs(c.Request.Context(), sid, ownerOf(c))
	if err != nil {
		writeError(c, poolErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": sid, "object": "session.deleted", "deleted": true, "subscription": sub})
}

// subscriptionView is one subscription in /debug/auth-pool: the seeds' fields
// first (numbers), then the rest of the snapshot.
type subscriptionView struct {
	ID               string  `json:"id"`
	Email            string  `json:"email"`
	WeeklyUsed       float64 `json:"weeklyUsed"`
	WeeklyBudget     float64 `json:"weeklyBudget"`
	CurrentBlockCost float64 `json:"currentBlockCost"`
	AssignedClients  int     `json:"assignedClients"`
	HealthScore      float64 `json:"healthScore"`
	Status           string  `json:"status"`
	BurnRate         float64 `json:"burnRate"`

	Type                          string     `json:"type"`
	StatusReason                  string     `json:"statusReason,omitempty"`
	Until                         *time.Time `json:"until,omitempty"`
	WeeklyPercent                 float64    `json:"weeklyPercent"`
	MaxClients                    int        `json:"maxClients"`
	ActiveClients                 int        `json:"activeClients"`
	IdleClients                   int        `json:"idleClients"`
	BlockActive                   bool       `json:"blockActive"`
	BlockStart                    *time.Time `json:"blockStart,omitempty"`
	BlockEnd                      *time.Time `json:"blockEnd,omitempty"`
	LastUsageAt                   *time.Time `json:"lastUsageAt,omitempty"`
	Tokens                        int64      `json:"tokens"`
	Requests                      int64      `json:"requests"`
	EstimatedHoursUntilExhaustion float64    `json:"estimatedHoursUntilExhaustion"`
	Health                        healthView `json:"health"`
	// WeeklySource says where weeklyPercent comes from: observed (the
	// CLI's seven_day utilization), reset (that window has reset: 0) or
	// estimate (weeklyUsed/weeklyBudget).
	WeeklySource string                `json:"weeklySource"`
	Windows      map[string]windowView `json:"windows"`
	AuthFailures int                   `json:"authFailures,omitempty"`
}

// windowView is one usage window as the CLI last reported it.
type windowView struct {
	// Utilization is the last observed fraction; Used the one in force
	// (0 once the window has reset); both absent when never observed.
	Utilization *float64   `json:"utilization,omitempty"`
	Used        *float64   `json:"used,omitempty"`
	Reset       *time.Time `json:"reset,omitempty"`
	Status      string     `json:"status,omitempty"`
	// Source is observed, reset or estimate (nothing observed).
	Source string `json:"source"`
	// AgeSeconds is how long ago it was observed (absent: never).
	AgeSeconds *float64 `json:"ageSeconds,omitempty"`
}

func windowViews(now time.Time, ws map[string]pool.WindowStatus) map[string]windowView {
	out := make(map[string]windowView, len(ws))
	for name, w := range ws {
		v := windowView{Utilization: w.Utilization, Used: w.Used, Reset: timePtr(w.ResetAt), Status: w.Status,
			Source: w.Source}
		if !w.ObservedAt.IsZero() {
			age := now.Sub(w.ObservedAt).Seconds()
			v.AgeSeconds = &age
		}
		out[name] = v
	}
	return out
}

// healthView is the health score with the parts of its formula.
type healthView struct {
	Score         float64 `json:"score"`
	WeeklyPercent float64 `json:"weeklyPercent"`
	BlockPercent  float64 `json:"blockPercent"`
	BurnPenalty   float64 `json:"burnPenalty"`
	Clients       int     `json:"clients"`
	IdleBonus     float64 `json:"idleBonus"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// debugPool is the seeds' /debug/auth-pool: {status: [...]}, plus the time of
// the snapshot and the usage served by the fallback.
func (s *Server) debugPool(c *gin.Context) {
	if s.pool == nil {
		c.JSON(http.StatusOK, gin.H{"enabled": false, "status": []subscriptionView{}})
		return
	}
	// The view counts every turn this replica answered: their settles run
	// after the answers, so wait (bounded) for those still running.
	wctx, cancel := context.WithTimeout(c.Request.Context(), pendingWait)
	_ = s.pending.idle(wctx)
	cancel()
	snap, err := s.pool.Status(c.Request.Context())
	if err != nil {
		writeError(c, poolErr(err))
		return
	}
	views := make([]subscriptionView, 0, len(snap.Subscriptions))
	for _, st := range snap.Subscriptions {
		views = append(views, viewOf(st, snap.Now))
	}
	fb, err := s.pool.FallbackUsage(c.Request.Context())
	if err != nil {
		writeError(c, poolErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"enabled": true, "now": snap.Now.UTC(), "status": views,
		"fallback": gin.H{"configured": s.backends.Fallback != nil, "weeklyUsed": fb.WeeklyUsed,
			"requests": fb.Requests, "tokens": fb.Tokens}})
}

// viewOf is one subscription of a snapshot as /debug and /admin/v1 show it.
func viewOf(st pool.SubscriptionStatus, now time.Time) subscriptionView {
	return subscriptionView{ID: st.ID, Email: st.Email, WeeklyUsed: st.WeeklyUsed,
		WeeklyBudget: st.WeeklyBudget, CurrentBlockCost: st.BlockCost, AssignedClients: st.Clients,
		HealthScore: st.Health.Display, Status: st.Status, BurnRate: st.BurnRate,
		Type: st.Type, StatusReason: st.StatusReason, Until: timePtr(st.Until), WeeklyPercent: st.WeeklyPercent,
		MaxClients: st.MaxClients, ActiveClients: st.ActiveClients, IdleClients: st.IdleClients,
		BlockActive: st.BlockActive, BlockStart: timePtr(st.BlockStart),
		BlockEnd: timePtr(st.BlockEnd), LastUsageAt: timePtr(st.LastUsageAt), Tokens: st.Tokens,
		Requests: st.Requests, EstimatedHoursUntilExhaustion: st.EstimatedHoursUntilExhaustion,
		Health: healthView{Score: st.Health.Score, WeeklyPercent: st.Health.WeeklyPercent,
			BlockPercent: st.Health.BlockPercent, BurnPenalty: st.Health.BurnPenalty,
			Clients: st.Health.Clients, IdleBonus: st.Health.IdleBonus},
		WeeklySource: st.WeeklySource, Windows: windowViews(now, st.Windows), AuthFailures: st.AuthFailures}
}

// debugMemory is a summary of the Go runtime's memory statistics.
func (s *Server) debugMemory(c *gin.Context) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	const mb = 1 << 20
	c.JSON(http.StatusOK, gin.H{
		"heapAllocMB":  float64(m.HeapAlloc) / mb,
		"heapInuseMB":  float64(m.HeapInuse) / mb,
		"heapSysMB":    float64(m.HeapSys) / mb,
		"sysMB":        float64(m.Sys) / mb,
		"totalAllocMB": float64(m.TotalAlloc) / mb,
		"heapObjects":  m.HeapObjects,
		"numGC":        m.NumGC,
		"pauseTotalMs": float64(m.PauseTotalNs) / 1e6,
		"goroutines":   runtime.NumGoroutine(),
	})
}
