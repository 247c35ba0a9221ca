package main

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/authpool/authpool/internal/runenv"
	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/pool"
	"github.com/authpool/authpool/pkg/telemetry"
)

// config is the gateway's environment (DESIGN §3). Secrets are kept for
// wiring and masked by String.
type config struct {
	// Addr is where to listen: ":PORT" with API keys, "127.0.0.1:PORT"
	// without; LISTEN_ADDR (host or host:port) overrides.
	Addr string
	// APIKeys (API_KEYS, comma-separated) are the client keys.
	APIKeys []string
	// APIKeysFile (API_KEYS_FILE) is a JSON list of named client keys with
	// their limits (gateway.LoadKeysFile), reloaded like the pool config.
	// Default none.
	APIKeysFile string
	// AdminToken (ADMIN_TOKEN) guards /debug/*, /admin/v1 and /status;
	// required in production.
	AdminToken string
	// AdminAddr (ADMIN_ADDR, host:port, e.g. 127.0.0.1:3002) serves
	// /metrics, /debug, /admin/v1 and /status apart from the API, which
	// then no longer serves them. Default "": the API's port serves all.
	AdminAddr string
	// Production is APP_ENV=production or NODE_ENV=production.
	Production bool
	// RateLimitPerMinute (RATE_LIMIT_PER_MINUTE) per client key. Default 60; 0 is off.
	RateLimitPerMinute int
	// TrustedProxies (TRUSTED_PROXIES, comma-separated CIDRs or IPs) are the
	// reverse proxies whose X-Forwarded-For is believed. Default none.
	TrustedProxies []string
	// Redis (REDIS_URL, or REDIS_ADDRS + REDIS_MASTER_NAME, REDIS_PASSWORD)
	// chooses Redis; none: the embedded one.
	Redis runenv.Redis
	// Pool is AUTH_POOL_CONFIG, AUTH_POOL_ENABLED (default true) and the
	// overrides WEEKLY_BUDGET and AUTH_POOL_REBALANCING_ENABLED.
	Pool runenv.Pool
	// Telemetry is LOG_LEVEL, LOG_FORMAT, OTEL_EXPORTER_OTLP_* and SENTRY_*.
	Telemetry telemetry.Config
	// BackendsPath (BACKENDS_CONFIG, default config/backends.json) is
	// optional unless set explicitly.
	BackendsPath     string
	BackendsExplicit bool
	// ClaudeBin (CLAUDE_BIN, default claude) is the CLI executable.
	ClaudeBin string
	// StateDir (AUTHPOOL_STATE_DIR, default authpool under the OS temp dir)
	// holds the CLI's working directories, cli/<subscription id>.
	StateDir string
	// AnthropicAPIKey (ANTHROPIC_API_KEY) enables the fallback backend;
	// AnthropicBaseURL (ANTHROPIC_BASE_URL) overrides its base URL.
	AnthropicAPIKey  string
	AnthropicBaseURL string
	// ShutdownTimeout (SHUTDOWN_TIMEOUT, a Go duration or seconds) bounds
	// the wait for in-flight requests. Default 30 s.
	ShutdownTimeout time.Duration
	// WebhookSecret (WEBHOOK_SECRET) signs webhooks sent by the embedded
	// notifier.
	WebhookSecret string
	// ServerTiming (SERVER_TIMING=1) adds a Server-Timing header and a
	// "request phases" log line to every turn. Default off.
	ServerTiming bool
	// Profiling (PPROF=1) serves net/http/pprof at /debug/pprof/ on the
	// admin surface, guarded like /debug. Default off.
	Profiling bool
}

// Defaults of config.
const (
	defaultPort            = "3000"
	defaultRateLimit       = 60
	defaultShutdownTimeout = 30 * time.Second
)

// loadEnv reads the environment, listing every problem at once. It is the
// gateway's one read of it, but for the variables that subscriptions'
// oauthTokenEnv name (see oauthTokens).
func loadEnv(getenv func(string) string) (*config, error) {
	c := &config{AdminToken: getenv("ADMIN_TOKEN"), Redis: runenv.RedisFromEnv(getenv),
		ClaudeBin: getenv("CLAUDE_BIN"), AnthropicAPIKey: getenv("ANTHROPIC_API_KEY"),
		AnthropicBaseURL: getenv("ANTHROPIC_BASE_URL"), WebhookSecret: getenv("WEBHOOK_SECRET"),
		RateLimitPerMinute: defaultRateLimit, ShutdownTimeout: defaultShutdownTimeout}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	c.APIKeys = runenv.List(getenv("API_KEYS"))
	c.APIKeysFile = strings.TrimSpace(getenv("API_KEYS_FILE"))
	c.Production = runenv.Production(getenv)
	if c.Production && !c.authOn() {
		bad("APP_ENV/NODE_ENV=production requires API_KEYS or API_KEYS_FILE")
	}
	if c.Production && strings.TrimSpace(c.AdminToken) == "" {
		bad("APP_ENV/NODE_ENV=production requires ADMIN_TOKEN (it guards /admin/v1, /status and /debug)")
	}
	if c.AdminAddr = getenv("ADMIN_ADDR"); c.AdminAddr != "" {
		if _, p, err := net.SplitHostPort(c.AdminAddr); err != nil || p == "" {
			bad("ADMIN_ADDR: want host:port such as 127.0.0.1:3002, got %q", c.AdminAddr)
		}
	}
	if p := c.Redis.Check(); p != "" {
		bad("%s", p)
	}
	if c.ClaudeBin == "" {
		c.ClaudeBin = backend.DefaultCLIBin
	}
	c.StateDir = getenv("AUTHPOOL_STATE_DIR")
	switch {
	case c.StateDir == "":
		c.StateDir = backend.DefaultStateDir()
	case !filepath.IsAbs(c.StateDir):
		bad("AUTHPOOL_STATE_DIR: want an absolute path, got %q", c.StateDir)
	}
	if c.BackendsPath = getenv("BACKENDS_CONFIG"); c.BackendsPath != "" {
		c.BackendsExplicit = true
	} else {
		c.BackendsPath = backend.DefaultBackendsPath
	}
	if v := getenv("RATE_LIMIT_PER_MINUTE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("RATE_LIMIT_PER_MINUTE: want a whole number ≥ 0 (0 turns it off), got %q", v)
		}
		c.RateLimitPerMinute = n
	}
	c.TrustedProxies = runenv.List(getenv("TRUSTED_PROXIES"))
	for _, p := range c.TrustedProxies {
		if !validProxy(p) {
			bad("TRUSTED_PROXIES: want comma-separated CIDRs or IPs such as 10.0.0.0/8 or 127.0.0.1, got %q", p)
		}
	}
	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := runenv.Duration(v)
		if err != nil || d <= 0 {
			bad("SHUTDOWN_TIMEOUT: want a duration such as 30s, got %q", v)
		}
		c.ShutdownTimeout = d
	}
	for name, dst := range map[string]*bool{"SERVER_TIMING": &c.ServerTiming, "PPROF": &c.Profiling} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				bad("%s: want 1 or 0 (true or false), got %q", name, v)
			}
			*dst = b
		}
	}
	var err error
	if c.Pool, err = runenv.PoolFromEnv(getenv); err != nil {
		bad("%v", err)
	}
	if c.Telemetry, err = runenv.TelemetryFromEnv(getenv, c.Production).Config(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			bad("%s", line)
		}
	}
	addr, err := listenAddr(getenv("LISTEN_ADDR"), getenv("PORT"), c.authOn())
	if err != nil {
		bad("%v", err)
	}
	c.Addr = addr
	if len(problems) > 0 {
		return nil, errors.New("configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}

// validProxy accepts what gin's SetTrustedProxies accepts: a CIDR or an IP.
func validProxy(s string) bool {
	if strings.Contains(s, "/") {
		_, _, err := net.ParseCIDR(s)
		return err == nil
	}
	return net.ParseIP(s) != nil
}

// listenAddr combines LISTEN_ADDR and PORT. Without API keys only a loopback
// host is allowed: an unauthenticated gateway spends subscriptions for
// whoever can reach it.
func listenAddr(listen, port string, keys bool) (string, error) {
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("PORT: want 0 to 65535, got %q", port)
	}
	host := ""
	if listen != "" {
		if h, p, err := net.SplitHostPort(listen); err == nil {
			host, port = h, p
		} else {
			host = listen
		}
	}
	if !keys {
		switch {
		case host == "" || host == "localhost":
			host = "127.0.0.1"
		case net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback():
			return "", fmt.Errorf("LISTEN_ADDR %q is not loopback and API_KEYS is empty: set API_KEYS to listen beyond this machine", listen)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// String describes the configuration with every secret masked.
func (c *config) String() string {
	redisMode := "embedded"
	if c.Redis.Configured() {
		redisMode = c.Redis.Describe()
	}
	proxies := strings.Join(c.TrustedProxies, ",")
	if proxies == "" {
		proxies = "none"
	}
	return fmt.Sprintf("addr=%s adminAddr=%s apiKeys=%d apiKeysFile=%s adminToken=%s production=%t rateLimitPerMinute=%d trustedProxies=%s redis=%s redisPassword=%s pool=%t poolConfig=%s backends=%s claudeBin=%s fallbackKey=%s webhookSecret=%s sentry=%s shutdownTimeout=%s serverTiming=%t pprof=%t",
		c.Addr, cmp.Or(c.AdminAddr, "same"), len(c.APIKeys), cmp.Or(c.APIKeysFile, "unset"), runenv.Mask(c.AdminToken), c.Production, c.RateLimitPerMinute, proxies, redisMode,
		runenv.Mask(c.Redis.Password), c.Pool.Enabled, c.Pool.ConfigPath, c.BackendsPath, c.ClaudeBin,
		runenv.Mask(c.AnthropicAPIKey), runenv.Mask(c.WebhookSecret), runenv.Mask(c.Telemetry.Sentry.DSN), c.ShutdownTimeout,
		c.ServerTiming, c.Profiling)
}

// authOn reports whether clients must present a key: API_KEYS or
// API_KEYS_FILE is set.
func (c *config) authOn() bool { return len(c.APIKeys) > 0 || c.APIKeysFile != "" }

// oauthTokens reads the variables that the subscriptions' oauthTokenEnv
// name: subscription id → token. Their names come from the config file, so
// this is the one read of the environment that waits for the file.
func oauthTokens(getenv func(string) string, subs []pool.SubscriptionConfig) map[string]string {
	tokens := map[string]string{}
	for _, s := range subs {
		if s.OAuthTokenEnv == "" {
			continue
		}
		if tok := getenv(s.OAuthTokenEnv); tok != "" {
			tokens[s.ID] = tok
		}
	}
	return tokens
}
