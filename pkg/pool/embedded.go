package pool

import (
	"context"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Embedded is an in-process Redis (miniredis) for the single-process
// default: state lives in memory and only one replica may use it.
type Embedded struct {
	// Client talks to the embedded Redis.
	Client *redis.Client
	mini   *miniredis.Miniredis
	stop   chan struct{}
	done   sync.WaitGroup
}

// NewEmbedded starts miniredis on a loopback port with a ticker that calls
// FastForward, so TTLs expire as time passes (miniredis does not expire keys
// by itself). Close it when done.
func NewEmbedded(tick time.Duration) (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if tick <= 0 {
		tick = time.Second
	}
	e := &Embedded{Client: redis.NewClient(&redis.Options{Addr: m.Addr()}), mini: m, stop: make(chan struct{})}
	e.done.Add(1)
	go func() {
		defer e.done.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-e.stop:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return e, nil
}

// Addr is the embedded Redis' address.
func (e *Embedded) Addr() string { return e.mini.Addr() }

// Ping checks the embedded Redis answers.
func (e *Embedded) Ping(ctx context.Context) error { return e.Client.Ping(ctx).Err() }

// Close stops the ticker, the client and the server.
func (e *Embedded) Close() error {
	close(e.stop)
	e.done.Wait()
	err := e.Client.Close()
	e.mini.Close()
	return err
}
