package runenv

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/authpool/authpool/pkg/pool"
)

// reloadTimeout bounds one reload's Redis work.
const reloadTimeout = 10 * time.Second

// ReloadPool re-reads the pool config and hands a valid, changed one to p
// (DESIGN §10). An invalid file changes nothing: each problem is logged with
// its JSON path and one config_reload_failed event is written. prepare runs
// before the swap (the gateway builds the backends of new subscriptions
// there); an error from it also keeps the running config. It reports
// whether the pool took a new config.
func ReloadPool(ctx context.Context, p *pool.Pool, env Pool, log *slog.Logger, cause string,
	prepare func(*pool.Config) error) bool {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	cur := p.Config().Version()
	cfg, err := env.Load()
	if err != nil {
		var ve *pool.ValidationError
		var problems []string
		if errors.As(err, &ve) {
			for _, pr := range ve.Problems {
				log.Error("config reload: invalid", "path", pr.Path, "problem", pr.Message, "file", env.ConfigPath)
				problems = append(problems, pr.String())
			}
		} else {
			log.Error("config reload: cannot read the file", "file", env.ConfigPath, "error", err.Error())
			problems = append(problems, err.Error())
		}
		log.Warn("config reload failed: the running config stays", "cause", cause, "version", cur.Short())
		if err := p.ReloadFailed(ctx, env.ConfigPath, problems); err != nil {
			log.Error("config reload: cannot write the config_reload_failed event", "error", err.Error())
		}
		return false
	}
	if cfg.Version().Hash == cur.Hash {
		// Unchanged content (a touch, a neighbour in the directory): a
		// replica behind re-syncs to learn whether it still is.
		if cause == "SIGHUP" || p.Behind() {
			if err := p.Sync(ctx); err != nil {
				log.Warn("config reload: sync failed", "error", err.Error())
			}
		}
		return false
	}
	if prepare != nil {
		if err := prepare(cfg); err != nil {
			log.Error("config reload: the running config stays", "cause", cause, "error", err.Error())
			_ = p.ReloadFailed(ctx, env.ConfigPath, []string{err.Error()})
			return false
		}
	}
	res, err := p.Reload(ctx, cfg)
	if errors.Is(err, pool.ErrPoolNameChanged) {
		log.Error("config reload: the pool name changed; restart to use it", "error", err.Error())
		_ = p.ReloadFailed(ctx, env.ConfigPath, []string{"pool: " + err.Error()})
		return false
	}
	if err != nil {
		// The pool took the config; writing it to Redis failed and the
		// healer or the next reload writes it.
		log.Warn("config reloaded but not synced to Redis yet", "error", err.Error())
	}
	log.Info("config reloaded", "cause", cause, "version", cfg.Version().Short(), "previous", cur.Short(),
		"subscriptions", len(cfg.Subscriptions), "added", res.Added, "removed", res.Removed)
	if res.Behind {
		log.Warn("config behind: Redis holds a newer config version; serving only the subscriptions this config knows",
			"version", cfg.Version().Short())
	}
	return true
}

// TakeNotifications hands the notification rules of the config the pool
// has in force to a deliverer (set: its SetConfig) after a reload; one it
// refuses is logged and the rules in force stay.
func TakeNotifications(p *pool.Pool, set func(pool.NotificationsConfig) error, log *slog.Logger) {
	if err := set(p.Config().Notifications); err != nil {
		log.Error("notification rules not reloaded: the rules in force stay", "error", err.Error())
	}
}
