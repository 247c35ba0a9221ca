package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/authpool/authpool/pkg/backend"
	"github.com/authpool/authpool/pkg/gateway"
	"github.com/authpool/authpool/pkg/pool"
)

// buildBackends builds one claude-cli backend per subscription (from
// backends.json when it lists one for the subscription, else the defaults)
// and the anthropic-api fallback when ANTHROPIC_API_KEY is set.
func buildBackends(cfg *config, p *pool.Pool, log *slog.Logger) (gateway.Backends, error) {
	var file *backend.BackendsConfig
	switch f, err := backend.LoadBackends(cfg.BackendsPath); {
	case err == nil:
		file = f
		log.Info("backends file loaded", "path", cfg.BackendsPath, "backends", len(f.Backends))
	case errors.Is(err, backend.ErrNoBackendsFile) && !cfg.BackendsExplicit:
		log.Info("no backends file: one claude-cli backend per subscription", "path", cfg.BackendsPath)
	default:
		return gateway.Backends{}, err
	}

	out := gateway.Backends{Subscriptions: map[string]backend.Backend{}}
	if p != nil {
		subs, err := cliBackends(cfg, file, p.Config().Subscriptions, log)
		if err != nil {
			return gateway.Backends{}, err
		}
		out.Subscriptions = subs
		if file != nil {
			for _, bc := range file.Backends {
				if bc.Type != backend.TypeClaudeCLI {
					continue
				}
				if _, ok := p.Subscription(bc.AccountID); !ok {
					log.Warn("backends.json names a subscription that auth-pool.json does not have; ignored",
						"backend", bc.Name, "accountId", bc.AccountID)
				}
			}
		}
	}

	if cfg.AnthropicAPIKey == "" {
		if file != nil {
			if _, ok := file.Fallback(); ok {
				log.Warn("backends.json has an anthropic-api backend but ANTHROPIC_API_KEY is not set: no fallback")
			}
		}
		log.Info("no fallback backend (ANTHROPIC_API_KEY is not set): an exhausted pool answers 503")
		return out, nil
	}
	opts := backend.APIOptions{APIKey: cfg.AnthropicAPIKey}
	tools := false
	if file != nil {
		if bc, ok := file.Fallback(); ok {
			opts = bc.APIOptions(cfg.AnthropicAPIKey)
			tools = bc.SupportsTools
		}
	}
	if cfg.AnthropicBaseURL != "" {
		opts.BaseURL = cfg.AnthropicBaseURL
	}
	fb, err := backend.NewAnthropicAPI(opts)
	if err != nil {
		return gateway.Backends{}, fmt.Errorf("fallback backend: %w", err)
	}
	out.Fallback = fb
	if tools {
		// Only the Messages API can pass tools through: supportsTools on a
		// claude-cli backend changes nothing (the CLI runs with no tools).
		out.Tools = fb
	}
	log.Info("fallback backend ready", "backend", fb.Name(), "tools", tools)
	return out, nil
}

// cliBackends builds the claude-cli backend of each subscription (from
// backends.json when it lists one for the subscription, else the defaults),
// at start-up and for the subscriptions a reloaded config adds.
func cliBackends(cfg *config, file *backend.BackendsConfig, subs []pool.SubscriptionConfig, log *slog.Logger) (map[string]backend.Backend, error) {
	out := map[string]backend.Backend{}
	for _, s := range subs {
		opts := backend.CLIOptions{Name: "claude-cli-" + s.ID, Bin: cfg.ClaudeBin}
		if file != nil {
			if bc, ok := file.ForAccount(s.ID); ok {
				opts = bc.CLIOptions(cfg.ClaudeBin)
				if bc.ConfigDir != "" && bc.ConfigDir != s.ConfigDir {
					log.Warn("backends.json configDir differs from auth-pool.json; the subscription's is used",
						"backend", bc.Name, "subscription", s.ID)
				}
			}
		}
		// One working directory per subscription, stable across runs
		// (the CLI files its sessions by working directory).
		opts.WorkDir = filepath.Join(cfg.StateDir, "cli", s.ID)
		b, err := backend.NewClaudeCLI(opts)
		if err != nil {
			return nil, fmt.Errorf("subscription %s: %w", s.ID, err)
		}
		out[s.ID] = b
	}
	return out, nil
}

// loadBackendsFile reads backends.json for a reload: absent is fine (the
// defaults), as at start-up unless BACKENDS_CONFIG named it.
func loadBackendsFile(cfg *config) (*backend.BackendsConfig, error) {
	f, err := backend.LoadBackends(cfg.BackendsPath)
	if errors.Is(err, backend.ErrNoBackendsFile) && !cfg.BackendsExplicit {
		return nil, nil
	}
	return f, err
}

// addBackends gives the gateway the backends of the subscriptions next adds,
// before the pool takes it: a session bound to a new subscription must find
// its CLI on every replica that knows the subscription.
func addBackends(cfg *config, srv *gateway.Server, next *pool.Config, getenv func(string) string, log *slog.Logger) error {
	var added []pool.SubscriptionConfig
	for _, s := range next.Subscriptions {
		if !srv.HasBackend(s.ID) {
			added = append(added, s)
		}
	}
	if len(added) == 0 {
		return nil
	}
	file, err := loadBackendsFile(cfg)
	if err != nil {
		return err
	}
	subs, err := cliBackends(cfg, file, added, log)
	if err != nil {
		return err
	}
	srv.AddBackends(subs, oauthTokens(getenv, added))
	return nil
}
