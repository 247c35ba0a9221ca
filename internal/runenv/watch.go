package runenv

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultReloadDebounce is how long a Watcher waits after the last change
// before it reloads: an editor's save (write temp, rename) or a Kubernetes
// ConfigMap update (a new ..data symlink swapped in) is several events.
const DefaultReloadDebounce = 300 * time.Millisecond

// WatcherParams build a Watcher.
type WatcherParams struct {
	// Paths are the files to watch (the pool config, the API keys file).
	// Their directories are watched, not the files: a rename-write or a
	// symlink swap replaces the file the watch was on.
	Paths []string
	// Debounce is the quiet time before Reload runs. Default
	// DefaultReloadDebounce.
	Debounce time.Duration
	// Reload runs once per burst of changes and on each SIGHUP, never
	// twice at once. It decides itself whether anything changed (a change
	// to a neighbour in the directory may be nothing).
	Reload func(ctx context.Context, cause string)
	// OnError reports a watch that could not be set up or failed; SIGHUP
	// still works.
	OnError func(error)
}

// Watcher calls Reload on SIGHUP and when a watched file changes.
type Watcher struct {
	p      WatcherParams
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewWatcher returns a Watcher; Start begins watching.
func NewWatcher(p WatcherParams) *Watcher {
	if p.Debounce <= 0 {
		p.Debounce = DefaultReloadDebounce
	}
	if p.OnError == nil {
		p.OnError = func(error) {}
	}
	return &Watcher{p: p}
}

// Start watches until Shutdown.
func (w *Watcher) Start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.p.OnError(err)
	} else {
		dirs := map[string]bool{}
		for _, p := range w.p.Paths {
			if p == "" {
				continue
			}
			d := filepath.Dir(p)
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := fw.Add(d); err != nil {
				w.p.OnError(err)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	names := map[string]bool{}
	for _, p := range w.p.Paths {
		names[filepath.Clean(p)] = true
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer signal.Stop(hup)
		if fw != nil {
			defer fw.Close()
		}
		var timer <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				w.p.Reload(ctx, "SIGHUP")
			case ev, ok := <-events:
				if !ok {
					events = nil
					continue
				}
				// The file itself, or Kubernetes' ..data symlink swap (the
				// file is a link through it, so its own name never changes).
				if names[filepath.Clean(ev.Name)] || filepath.Base(ev.Name) == "..data" {
					timer = time.After(w.p.Debounce)
				}
			case err, ok := <-errs:
				if !ok {
					errs = nil
					continue
				}
				if !errors.Is(err, context.Canceled) {
					w.p.OnError(err)
				}
			case <-timer:
				timer = nil
				w.p.Reload(ctx, "file changed")
			}
		}
	}()
}

// Shutdown stops watching and waits for a Reload in progress.
func (w *Watcher) Shutdown() {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
}
