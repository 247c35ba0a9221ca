package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds the browser, or skips (fails with CHROMIUM_REQUIRED=1,
// as CI sets it, like REDIS_REQUIRED).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CHROMIUM_REQUIRED") == "1" {
		t.Fatal("chromium required (CHROMIUM_REQUIRED=1) but not on PATH")
	}
	t.Skip("no chromium on PATH")
	return ""
}

// artifactDir is where screenshots go: $AUTHPOOL_ARTIFACTS_DIR, else the
// test's temp dir (never the repository).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("AUTHPOOL_ARTIFACTS_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestStatusPageInABrowser: a real Chromium at phone width signs in, sees
// every subscription, drains one with its button and sees it drained.
func TestStatusPageInABrowser(t *testing.T) {
	exe := chromium(t)
	c := startCluster(t, clusterOpts{replicas: 1, subs: 3, env: []string{"ADMIN_TOKEN=" + adminToken}})
	c.seedTurn(0, "", "hello", false) // some usage, so the savings show

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(390, 844))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	page := c.replicas[0].url + "/status"
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("sign-in form", chromedp.Navigate(page), chromedp.WaitVisible(css(`form#login`))) // no token yet
	step("sign in", chromedp.SendKeys(css(`#token`), adminToken), chromedp.Click(css(`form#login button[type=submit]`)),
		chromedp.WaitVisible(css(`.sub[data-sub="sub3"]`)))
	subs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.sub')).map(e => e.dataset.sub)`))
	if err != nil {
		t.Fatal(err)
	}
	savings, err := chromedp.Run(ctx, chromedp.Text(css(`#savings`)))
	if err != nil {
		t.Fatal(err)
	}
	step("drain", chromedp.Click(css(`button[data-action="drain"][data-sub="sub2"]`)),
		chromedp.WaitVisible(css(`.sub[data-sub="sub2"] .status[data-status="draining"]`)))
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100) /* 100: PNG */)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(subs, ",") != "sub1,sub2,sub3" {
		t.Errorf("subscriptions on the page: %v", subs)
	}
	if savings == "" || savings == "$0.00" {
		t.Errorf("savings %q, want the value of the turn served", savings)
	}
	if st := c.adminStatus(0); st["sub2"] != "draining" {
		t.Errorf("after the drain button, sub2 is %q", st["sub2"])
	}
	path := filepath.Join(artifactDir(t), "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestStatusPageRefusesForgedWrites: without a sign-in the page is the form;
// a write without the session's CSRF token is refused.
func TestStatusPageRefusesForgedWrites(t *testing.T) {
	c := startCluster(t, clusterOpts{replicas: 1, subs: 1, env: []string{"ADMIN_TOKEN=" + adminToken}})
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := c.replicas[0].url
	get := func() string {
		resp, err := hc.Get(base + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	post := func(path string, form url.Values) int {
		resp, err := hc.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	html := get()
	m := csrfField.FindStringSubmatch(html)
	if !strings.Contains(html, `id="login"`) || m == nil {
		t.Fatalf("without a sign-in: %s", html)
	}
	if code := post("/status/subscriptions/sub1/drain", url.Values{"csrf": {m[1]}}); code != 401 {
		t.Errorf("drain before sign-in: %d, want 401", code)
	}
	m = csrfField.FindStringSubmatch(get()) // each form shown gets a fresh token
	if code := post("/status/login", url.Values{"csrf": {"forged"}, "token": {adminToken}}); code != 403 {
		t.Errorf("sign-in with a forged CSRF token: %d, want 403", code)
	}
	m = csrfField.FindStringSubmatch(get())
	if code := post("/status/login", url.Values{"csrf": {m[1]}, "token": {"wrong"}}); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	m = csrfField.FindStringSubmatch(get())
	if code := post("/status/login", url.Values{"csrf": {m[1]}, "token": {adminToken}}); code != 303 {
		t.Fatalf("sign-in: %d, want 303", code)
	}
	for _, ck := range jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(base, "http://"), Path: "/status"}) {
		if strings.Contains(ck.Value, adminToken) {
			t.Errorf("cookie %s holds the token", ck.Name)
		}
	}
	m = csrfField.FindStringSubmatch(get())
	if m == nil {
		t.Fatal("signed in, but no form carries a CSRF token")
	}
	if code := post("/status/subscriptions/sub1/drain", url.Values{"csrf": {"forged"}}); code != 403 {
		t.Errorf("drain with a forged CSRF token: %d, want 403", code)
	}
	if st := c.adminStatus(0); st["sub1"] != "available" {
		t.Errorf("a forged write changed sub1 to %q", st["sub1"])
	}
	if code := post("/status/subscriptions/sub1/drain", url.Values{"csrf": {m[1]}}); code != 303 {
		t.Errorf("drain with the session's CSRF token: %d, want 303", code)
	}
	if st := c.adminStatus(0); st["sub1"] != "draining" {
		t.Errorf("after the drain, sub1 is %q", st["sub1"])
	}
}
