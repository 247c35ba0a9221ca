package gateway

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/pkg/pool"
)

// The status page (GET /status): server-rendered HTML, no build step, for an
// operator's browser or phone. It signs in with the admin token through a
// form; the cookie it sets holds no token, only a random value and its
// HMAC keyed by a value derived from the token, so every replica with the
// same ADMIN_TOKEN accepts it and a stolen cookie never yields the token.
// Every write is a POST carrying a CSRF token bound to that cookie.

//go:embed templates/*.html
var templateFS embed.FS

var pageTemplates = template.Must(template.ParseFS(templateFS, "templates/*.html"))

const (
	// pageCookie holds the signed session of the status page.
	pageCookie = "authpool_admin"
	// loginCookie binds the login form's CSRF token to the browser.
	loginCookie = "authpool_login"
	// pageSessionTTL is how long a sign-in lasts.
	pageSessionTTL = 12 * time.Hour
	// pageRefreshSeconds is the page's self-refresh period.
	pageRefreshSeconds = 5
	// savingsCacheTTL bounds how often the page reads the 7-day report: a
	// refresh every few seconds must not read a week of usage each time.
	savingsCacheTTL = 15 * time.Second
)

// pageAuth signs the status page's cookies.
type pageAuth struct {
	key []byte
	// token: an ADMIN_TOKEN is configured and sign-in is required; without
	// one the page is for loopback clients, and the key is random per process.
	token bool
}

func newPageAuth(adminToken string) *pageAuth {
	if adminToken == "" {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return &pageAuth{key: k}
	}
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("authpool status page v1"))
	return &pageAuth{key: m.Sum(nil), token: true}
}

func (a *pageAuth) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(m.Sum(nil))
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// issue returns a new session cookie value: expiry.nonce.mac.
func (a *pageAuth) issue(now time.Time) string {
	exp := strconv.FormatInt(now.Add(pageSessionTTL).Unix(), 10)
	nonce := randomHex()
	return exp + "." + nonce + "." + a.mac("session", exp, nonce)
}

// verify returns the session's nonce when the value is ours and unexpired.
func (a *pageAuth) verify(v string, now time.Time) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || now.Unix() > exp {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(a.mac("session", parts[0], parts[1]))) {
		return "", false
	}
	return parts[1], true
}

func (a *pageAuth) csrf(nonce string) string { return a.mac("csrf", nonce) }

func setCookie(c *gin.Context, name, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/status", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil})
}

// pageSession is the nonce of the request's valid session cookie.
func (s *Server) pageSession(c *gin.Context) (string, bool) {
	v, err := c.Cookie(pageCookie)
	if err != nil {
		return "", false
	}
	return s.page.verify(v, time.Now())
}

// checkCSRF compares the form's csrf field with the session's, in constant time.
func checkCSRF(c *gin.Context, want string) bool {
	return hmac.Equal([]byte(c.PostForm("csrf")), []byte(want))
}

func (s *Server) statusRoutes(e *gin.Engine) {
	g := e.Group("/status", s.limitBody, s.pageLoopback)
	g.GET("", s.statusPage)
	g.POST("/login", s.statusLogin)
	g.POST("/logout", s.statusLogout)
	g.POST("/subscriptions/:id/:action", s.statusAction)
}

// pageLoopback keeps the page to loopback clients when no ADMIN_TOKEN is
// set, as /debug.
func (s *Server) pageLoopback(c *gin.Context) {
	if !s.page.token && !loopback(c.ClientIP()) {
		writeError(c, ErrForbidden)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	c.Next()
}

func (s *Server) renderLogin(c *gin.Context, status int, msg string) {
	nonce := randomHex()
	setCookie(c, loginCookie, nonce, 600)
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplates.ExecuteTemplate(c.Writer, "login", gin.H{"CSRF": s.page.mac("login", nonce), "Error": msg})
}

func (s *Server) statusLogin(c *gin.Context) {
	nonce, err := c.Cookie(loginCookie)
	if err != nil || !hmac.Equal([]byte(c.PostForm("csrf")), []byte(s.page.mac("login", nonce))) {
		s.renderLogin(c, http.StatusForbidden, "The form expired; sign in again.")
		return
	}
	if s.page.token && (s.admin == nil || !s.admin.valid(c.PostForm("token"))) {
		s.renderLogin(c, http.StatusUnauthorized, "Wrong token.")
		return
	}
	setCookie(c, loginCookie, "", -1)
	setCookie(c, pageCookie, s.page.issue(time.Now()), int(pageSessionTTL.Seconds()))
	c.Redirect(http.StatusSeeOther, "/status")
}

func (s *Server) statusLogout(c *gin.Context) {
	if nonce, ok := s.pageSession(c); ok && checkCSRF(c, s.page.csrf(nonce)) {
		setCookie(c, pageCookie, "", -1)
	}
	c.Redirect(http.StatusSeeOther, "/status")
}

func (s *Server) statusAction(c *gin.Context) {
	nonce, ok := s.pageSession(c)
	if !ok {
		s.renderLogin(c, http.StatusUnauthorized, "Sign in first.")
		return
	}
	if !checkCSRF(c, s.page.csrf(nonce)) {
		writeError(c, ErrForbidden)
		return
	}
	id, action := c.Param("id"), c.Param("action")
	if !slices.Contains(subscriptionActions, action) || !pool.ValidID(id) || s.pool == nil {
		writeError(c, ErrNotFound)
		return
	}
	if _, err := s.pool.SubscriptionAction(c.Request.Context(), action, id, AdminActor); err != nil {
		writeError(c, adminErr(err))
		return
	}
	c.Redirect(http.StatusSeeOther, "/status")
}

// pageSub is one subscription card.
type pageSub struct {
	ID, Email, Status, Reason, Until            string
	BlockCost, WeeklyUsed, WeeklyBudget, Health string
	BlockPct, WeeklyPct                         string
	Active, Idle, Max                           int
	Actions                                     []pageAction
}

type pageAction struct{ Sub, Name string }

type pageEvent struct{ Time, Type, Sub, Message string }

type pageSavings struct {
	Window, Saved, Fallback, Share string
	Requests                       int64
}

// savingsCache keeps the page's last report for savingsCacheTTL.
type savingsCache struct {
	mu  sync.Mutex
	at  time.Time
	rep *pool.Report
}

func pct(v float64) string {
	v = max(0, min(100, v))
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func usd2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func (s *Server) statusPage(c *gin.Context) {
	nonce, ok := s.pageSession(c)
	if !ok {
		if s.page.token {
			s.renderLogin(c, http.StatusOK, "")
			return
		}
		// Loopback without a token: the client is trusted; the cookie only
		// binds the CSRF token of the page's forms.
		v := s.page.issue(time.Now())
		setCookie(c, pageCookie, v, int(pageSessionTTL.Seconds()))
		nonce, _ = s.page.verify(v, time.Now())
	}
	ctx := c.Request.Context()
	data := gin.H{"Refresh": pageRefreshSeconds, "CSRF": s.page.csrf(nonce), "CanLogout": s.page.token,
		"Now": time.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	var errs []string
	var subs []pageSub
	if s.pool != nil {
		snap, err := s.pool.Status(ctx)
		if err != nil {
			errs = append(errs, "status unavailable")
		} else {
			for _, st := range snap.Subscriptions {
				ps := pageSub{ID: st.ID, Email: st.Email, Status: st.Status, Reason: st.StatusReason,
					BlockCost: usd2(st.BlockCost), WeeklyUsed: usd2(st.WeeklyUsed), WeeklyBudget: usd2(st.WeeklyBudget),
					Health:   strconv.FormatFloat(st.Health.Display, 'f', 1, 64),
					BlockPct: pct(st.Health.BlockPercent), WeeklyPct: pct(st.WeeklyPercent),
					Active: st.ActiveClients, Idle: st.IdleClients, Max: st.MaxClients}
				if !st.Until.IsZero() {
					ps.Until = st.Until.UTC().Format("Jan 2 15:04 UTC")
				}
				for _, a := range subscriptionActions {
					ps.Actions = append(ps.Actions, pageAction{Sub: st.ID, Name: a})
				}
				subs = append(subs, ps)
			}
		}
		if info, ok, err := s.pool.Leader().Info(ctx); err == nil && ok {
			data["Leader"], data["LeaderEpoch"] = info.Holder, info.Epoch
			data["LeaderSince"] = info.Since.UTC().Format("Jan 2 15:04:05 UTC")
		}
		var evs []pageEvent
		if list, err := s.pool.RecentEvents(ctx, "", 15); err == nil {
			for _, e := range list {
				evs = append(evs, pageEvent{Time: e.Time.UTC().Format("Jan 2 15:04:05"), Type: e.Type,
					Sub: e.Subscription, Message: e.Message})
			}
		}
		data["Events"] = evs
		if rep := s.savings(c); rep != nil {
			data["Savings"] = pageSavings{Window: rep.Window, Saved: usd2(rep.Total.ValueUSD()),
				Fallback: usd2(rep.Total.FallbackUSD()), Share: pct(rep.Total.Share()*100) + "%",
				Requests: rep.Total.Requests}
		}
	}
	if data["Savings"] == nil {
		data["Savings"] = pageSavings{Window: "7d", Saved: "0.00", Fallback: "0.00", Share: "0%"}
	}
	data["Subscriptions"] = subs
	if len(errs) > 0 {
		data["Error"] = strings.Join(errs, "; ")
	}
	c.Status(http.StatusOK)
	c.Header("Content-Type", "text/html; charset=utf-8")
	_ = pageTemplates.ExecuteTemplate(c.Writer, "status", data)
}

// savings is the 7-day report, read at most every savingsCacheTTL.
func (s *Server) savings(c *gin.Context) *pool.Report {
	s.savingsCache.mu.Lock()
	defer s.savingsCache.mu.Unlock()
	if s.savingsCache.rep != nil && time.Since(s.savingsCache.at) < savingsCacheTTL {
		return s.savingsCache.rep
	}
	rep, err := s.pool.Report(c.Request.Context(), "7d")
	if err != nil {
		return s.savingsCache.rep
	}
	s.savingsCache.rep, s.savingsCache.at = rep, time.Now()
	return rep
}
