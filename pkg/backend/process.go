package backend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Bounds on what a CLI process may print.
const (
	maxStreamLine = 16 << 20 // one stream-json line (an assistant message can be long)
	maxStderr     = 16 << 10 // enough for any message worth classifying
)

// errLineTooLong is a stream-json line over maxStreamLine.
var errLineTooLong = errors.New("stream-json line too long")

// run starts the process in its working directory, feeds it, reads its
// stream-json, stops it when it must, and classifies the outcome.
func (c *ClaudeCLI) run(ctx context.Context, tgt Target, req Request, args []string, onDelta func(string)) (*Result, error) {
	dir, err := c.workDir(tgt)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()

	cmd := exec.Command(c.opts.Bin, args...)
	cmd.Env = c.env(tgt)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(req.Prompt)
	// A grandchild holding stdout open must not keep Wait waiting.
	cmd.WaitDelay = c.opts.KillGrace
	setProcessGroup(cmd)
	stderr := &cappedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: stdout pipe: %w", ErrBackend, c.opts.Name, err)
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: start %s: %w", ErrBackend, c.opts.Name, c.opts.Bin, err)
	}
	rt := runTimesOf(ctx)
	if rt != nil {
		*rt = RunTimes{Started: time.Now()}
	}
	exited := make(chan struct{})
	go c.stopOnDone(runCtx, cmd.Process, exited)

	dec := NewStreamDecoder(onDelta)
	line := dec.Line
	if rt != nil {
		line = func(b []byte) error {
			if rt.FirstByte.IsZero() {
				rt.FirstByte = time.Now()
			}
			return dec.Line(b)
		}
	}
	readErr := readLines(pipe, line)
	if readErr != nil {
		killTree(cmd.Process) // nobody reads its output any more
	}
	waitErr := cmd.Wait()
	if rt != nil {
		rt.Exited = time.Now()
	}
	close(exited)
	killTree(cmd.Process) // whatever is left of the group is an orphan
	if errors.Is(readErr, ErrSandbox) {
		return nil, fmt.Errorf("%s: %w", c.opts.Name, readErr)
	}

	res, parseErr := dec.Result()
	rejected, isRejected := rejection(dec.RateLimits())
	if readErr == nil && parseErr == nil && !res.IsError && !isRejected {
		if res.DurationMS == 0 {
			res.DurationMS = time.Since(start).Milliseconds()
		}
		return res, nil
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrCanceled, c.opts.Name, context.Cause(ctx))
	case runCtx.Err() != nil:
		return nil, fmt.Errorf("%w: %s after %s", ErrTimeout, c.opts.Name, c.opts.Timeout)
	}

	// Only the CLI's error channels speak of limits and logins: an is_error
	// result, stderr, its stray lines and synthetic messages, a rejected
	// rate_limit_event. Never the text of an answer.
	var text []string
	if res != nil && res.IsError {
		text = append(text, res.Text)
	}
	text = append(text, string(stderr.Bytes()), dec.text())
	reason := "no result"
	switch {
	case readErr != nil:
		reason = "reading output: " + readErr.Error()
	case waitErr != nil:
		reason = waitErr.Error() // "exit status 2", "signal: killed"
	case res != nil && res.IsError:
		reason = "error result (" + excerpt(res.Subtype) + ")"
	case isRejected:
		reason = "rate limit rejected"
	case parseErr != nil:
		reason = "unparsable output"
	}
	err = c.classify(strings.Join(text, "\n"), reason, tgt.OAuthToken)
	if isRejected {
		err = rejectedLimit(rejected, err)
	}
	var le *LimitError
	if errors.As(err, &le) && res != nil {
		res.IsError = true
		le.Result = res
	}
	return nil, err
}

// rejectedLimit is the limit a rejected rate_limit_event reports. Its reset
// wins over one parsed from the error's text; the text's message is kept.
func rejectedLimit(r RateLimit, classified error) *LimitError {
	le := &LimitError{Window: r.Window, ResetAt: r.ResetsAt, Message: "rate_limit_event: " + r.Window + " rejected"}
	if w, ok := r.Windows[r.Window]; ok && le.ResetAt.IsZero() {
		le.ResetAt = w.ResetsAt
	}
	var text *LimitError
	if errors.As(classified, &text) {
		if le.ResetAt.IsZero() {
			le.ResetAt = text.ResetAt
		}
		if text.Message != "" {
			le.Message = text.Message
		}
	}
	return le
}

// stopOnDone stops the process group once ctx ends: SIGTERM, then SIGKILL
// after KillGrace, unless the process exits first.
func (c *ClaudeCLI) stopOnDone(ctx context.Context, p *os.Process, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	case <-ctx.Done():
	}
	terminateTree(p)
	t := time.NewTimer(c.opts.KillGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		killTree(p)
	}
}

// lineReaders reuse readLines' 64 KiB buffers: allocating (and clearing)
// one per run showed in the gateway's CPU profile.
var lineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// readLines calls fn with each line of r, without its length bounded by a
// buffer size (up to maxStreamLine). fn must not keep the slice.
func readLines(r io.Reader, fn func([]byte) error) error {
	br := lineReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() {
		br.Reset(nil) // drop r
		lineReaders.Put(br)
	}()
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(chunk) > maxStreamLine {
				return errLineTooLong
			}
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			if len(long)+len(chunk) > maxStreamLine {
				return errLineTooLong
			}
			line = append(long, chunk...)
			long = long[:0]
		}
		if len(line) > 0 {
			if ferr := fn(line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// so that a runaway process can neither fill memory nor block on its pipe.
type cappedBuffer struct {
	max int
	buf []byte
}

// Write keeps what fits and reports everything written.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room < len(p) {
		b.buf = append(b.buf, p[:max(room, 0)]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf }
