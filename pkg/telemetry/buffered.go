package telemetry

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// DefaultLogFlushInterval is how often a BufferedWriter made by the binaries
// flushes what its log lines left in the buffer.
const DefaultLogFlushInterval = 200 * time.Millisecond

// BufferedWriter buffers log lines in memory and writes them out every
// interval, when the buffer fills, on Flush and on Close: a line per request
// then costs no write system call of its own. A logger made by NewLogger on
// one flushes at once after a line at WARN or above, so a warning or an
// error is never held back. Close it before the process exits: lines still
// buffered are lost otherwise.
type BufferedWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// NewBufferedWriter buffers writes to w (64 KiB) and flushes them every
// interval (DefaultLogFlushInterval when ≤ 0).
func NewBufferedWriter(w io.Writer, interval time.Duration) *BufferedWriter {
	if interval <= 0 {
		interval = DefaultLogFlushInterval
	}
	b := &BufferedWriter{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop(interval)
	return b
}

func (b *BufferedWriter) loop(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.Flush()
		}
	}
}

// Write buffers p; after Close it writes through.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.w.Write(p)
	if err == nil && b.closed {
		err = b.w.Flush()
	}
	return n, err
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the periodic flush and flushes what is buffered; later writes
// go straight through.
func (b *BufferedWriter) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	<-b.done
	return b.Flush()
}
