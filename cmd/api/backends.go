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
		for _, s := range p.Config().Subscriptions {
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
				return gateway.Backends{}, fmt.Errorf("subscription %s: %w", s.ID, err)
			}
			out.Subscriptions[s.ID] = b
		}
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
