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
	"time"
)

// Bounds on what a CLI process may print.
const (
	maxJSONOutput = 64 << 20 // the json result object
	maxStreamLine = 16 << 20 // one stream-json line (an assistant message can be long)
	maxStderr     = 16 << 10 // enough for any message worth classifying
)

// errLineTooLong is a stream-json line over maxStreamLine.
var errLineTooLong = errors.New("stream-json line too long")

// run starts the process, feeds it, reads it, stops it when it must, and
// classifies the outcome.
func (c *ClaudeCLI) run(ctx context.Context, tgt Target, req Request, args []string, onDelta func(string)) (*Result, error) {
	runCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()

	cmd := exec.Command(c.opts.Bin, args...)
	cmd.Env = c.env(tgt)
	cmd.Stdin = strings.NewReader(req.Prompt)
	// A grandchild holding stdout open must not keep Wait waiting.
	cmd.WaitDelay = c.opts.KillGrace
	setProcessGroup(cmd)
	stderr := &cappedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	stdout := &cappedBuffer{max: maxJSONOutput}
	var pipe io.ReadCloser
	if req.Stream {
		var err error
		if pipe, err = cmd.StdoutPipe(); err != nil {
			return nil, fmt.Errorf("%w: %s: stdout pipe: %w", ErrBackend, c.opts.Name, err)
		}
	} else {
		cmd.Stdout = stdout
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: start %s: %w", ErrBackend, c.opts.Name, c.opts.Bin, err)
	}
	exited := make(chan struct{})
	go c.stopOnDone(runCtx, cmd.Process, exited)

	var dec *StreamDecoder
	var readErr error
	if req.Stream {
		dec = NewStreamDecoder(onDelta)
		if readErr = readLines(pipe, dec.Line); readErr != nil {
			killTree(cmd.Process) // nobody reads its output any more
		}
	}
	waitErr := cmd.Wait()
	close(exited)
	killTree(cmd.Process) // whatever is left of the group is an orphan

	var res *Result
	var parseErr error
	var stray string
	if req.Stream {
		res, parseErr = dec.Result()
		stray = dec.text()
	} else {
		res, parseErr = ParseResult(stdout.Bytes())
		if parseErr != nil {
			stray = string(stdout.Bytes()[:min(stdout.Len(), 4<<10)])
		}
	}
	if readErr == nil && parseErr == nil && !res.IsError {
		if le, ok := limitAnswer(res.Text, time.Now()); ok {
			return nil, le
		}
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

	var text []string
	if res != nil && res.IsError {
		text = append(text, res.Text)
	}
	text = append(text, string(stderr.Bytes()), stray)
	reason := "no result"
	switch {
	case readErr != nil:
		reason = "reading output: " + readErr.Error()
	case stdout.truncated:
		reason = fmt.Sprintf("output over %d bytes", maxJSONOutput)
	case waitErr != nil:
		reason = waitErr.Error() // "exit status 2", "signal: killed"
	case res != nil && res.IsError:
		reason = "error result (" + excerpt(res.Subtype) + ")"
	case parseErr != nil:
		reason = "unparsable output"
	}
	return nil, c.classify(strings.Join(text, "\n"), reason, tgt.OAuthToken)
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

// readLines calls fn with each line of r, without its length bounded by a
// buffer size (up to maxStreamLine). fn must not keep the slice.
func readLines(r io.Reader, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
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
	max       int
	buf       []byte
	truncated bool
}

// Write keeps what fits and reports everything written.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room < len(p) {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte { return b.buf }
func (b *cappedBuffer) Len() int      { return len(b.buf) }
