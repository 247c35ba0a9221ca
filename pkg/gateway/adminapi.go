package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/pool"
)

// The operator API (DESIGN §10): /admin/v1, behind ADMIN_TOKEN (Bearer), or
// loopback clients only without one. Every write is one pool script and
// one admin_action event.

// AdminActor names the admin token in admin_action events: with one
// ADMIN_TOKEN there is one name.
const AdminActor = "admin"

// streamID is an events stream id (ms-seq), the since of /admin/v1/events.
var streamID = regexp.MustCompile(`^[0-9]{1,20}(-[0-9]{1,20})?$`)

// maxEvents bounds one /admin/v1/events answer.
const maxEvents = 100

func (s *Server) adminRoutes(e *gin.Engine) {
	a := e.Group("/admin/v1", s.limitBody, s.adminAuth, s.needPool)
	a.GET("/subscriptions", s.adminSubscriptions)
	a.POST("/subscriptions/:id/:action", s.adminSubscriptionAction)
	a.GET("/sessions", s.adminSessions)
	a.POST("/sessions/:id/move", s.adminMoveSession)
	a.DELETE("/sessions/:id", s.adminEndSession)
	a.GET("/events", s.adminEvents)
	a.GET("/report", s.adminReport)
}

// needPool answers 404 for the admin routes of a gateway without a pool
// (AUTH_POOL_ENABLED=false): there is nothing to act on.
func (s *Server) needPool(c *gin.Context) {
	if s.pool == nil {
		writeError(c, ErrNotFound)
		return
	}
	c.Next()
}

// adminErr keeps the operator's own refusals (a subscription that is not
// there, a move the state does not allow) and treats the rest as poolErr does.
func adminErr(err error) error {
	if errors.Is(err, pool.ErrSubscriptionNotFound) || errors.Is(err, pool.ErrRefused) {
		return err
	}
	return poolErr(err)
}

func (s *Server) adminSubscriptions(c *gin.Context) {
	snap, err := s.pool.Status(c.Request.Context())
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	views := make([]subscriptionView, 0, len(snap.Subscriptions))
	for _, st := range snap.Subscriptions {
		views = append(views, viewOf(st, snap.Now))
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "now": snap.Now.UTC(), "data": views})
}

// subscriptionActions are the writes of POST /admin/v1/subscriptions/{id}/{action}.
var subscriptionActions = []string{pool.ActionDrain, pool.ActionDisable, pool.ActionEnable, pool.ActionReset}

func (s *Server) adminSubscriptionAction(c *gin.Context) {
	id, action := c.Param("id"), c.Param("action")
	if !slices.Contains(subscriptionActions, action) {
		writeError(c, ErrNotFound)
		return
	}
	if !pool.ValidID(id) {
		writeError(c, badField("id", "a subscription id must match ^[A-Za-z0-9_-]{1,128}$"))
		return
	}
	r, err := s.pool.SubscriptionAction(c.Request.Context(), action, id, AdminActor)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "action": action, "changed": r.Changed, "status": r.Status,
		"previousStatus": r.Previous})
}

// sessionView is one session in /admin/v1/sessions.
type sessionView struct {
	ID           string  `json:"id"`
	Subscription string  `json:"subscription"` // "fallback" while on the fallback
	Owner        string  `json:"owner"`        // the owner key id, never the key
	LastActive   any     `json:"lastActive"`
	Requests     int64   `json:"requests"`
	CostUSD      float64 `json:"costUSD"`
	Tokens       int64   `json:"tokens"`
}

func (s *Server) adminSessions(c *gin.Context) {
	f := pool.SessionFilter{Subscription: c.Query("subscription"), Owner: c.Query("key")}
	if f.Subscription != "" && !pool.ValidID(f.Subscription) {
		writeError(c, badField("subscription", "must match ^[A-Za-z0-9_-]{1,128}$"))
		return
	}
	if f.Owner != "" && !pool.ValidID(f.Owner) {
		writeError(c, badField("key", "must match ^[A-Za-z0-9_-]{1,128}$"))
		return
	}
	var cursor uint64
	if v := c.Query("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(c, badField("cursor", "must be the number a previous page returned as next"))
			return
		}
		cursor = n
	}
	page, err := s.pool.Sessions(c.Request.Context(), f, cursor)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	out := make([]sessionView, 0, len(page.Sessions))
	for _, se := range page.Sessions {
		sub := se.Subscription
		if sub == "" {
			sub = "fallback"
		}
		out = append(out, sessionView{ID: se.ID, Subscription: sub, Owner: se.Owner,
			LastActive: timePtr(se.LastActive), Requests: se.Requests, CostUSD: se.CostUSD, Tokens: se.Tokens})
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": out, "next": strconv.FormatUint(page.Next, 10),
		"complete": page.Next == 0})
}

func (s *Server) adminMoveSession(c *gin.Context) {
	sid := c.Param("id")
	if !pool.ValidSessionID(sid) {
		writeError(c, pool.ErrInvalidSession)
		return
	}
	var body struct {
		To string `json:"to"`
	}
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(c, badField("", "want a JSON body {\"to\": \"<subscription id>\"}"))
		return
	}
	if !pool.ValidID(body.To) {
		writeError(c, badField("to", "a subscription id must match ^[A-Za-z0-9_-]{1,128}$"))
		return
	}
	r, err := s.pool.MoveSession(c.Request.Context(), sid, body.To, AdminActor)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": sid, "moved": true, "from": r.Previous, "subscription": r.Status})
}

func (s *Server) adminEndSession(c *gin.Context) {
	sid := c.Param("id")
	if !pool.ValidSessionID(sid) {
		writeError(c, pool.ErrInvalidSession)
		return
	}
	r, err := s.pool.EndSession(c.Request.Context(), sid, AdminActor)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"id": sid, "object": "session.deleted", "deleted": true, "subscription": r.Status})
}

func (s *Server) adminEvents(c *gin.Context) {
	since := c.Query("since")
	if since != "" && !streamID.MatchString(since) {
		writeError(c, badField("since", "must be an events stream id such as 1717171717171-0"))
		return
	}
	evs, err := s.pool.RecentEvents(c.Request.Context(), since, maxEvents)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": evs})
}

func (s *Server) adminReport(c *gin.Context) {
	w := c.DefaultQuery("window", "7d")
	if !slices.Contains(pool.ReportWindows(), w) {
		writeError(c, badField("window", "must be one of %v", pool.ReportWindows()))
		return
	}
	r, err := s.pool.Report(c.Request.Context(), w)
	if err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.JSON(http.StatusOK, r)
}
