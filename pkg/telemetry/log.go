package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ErrLogConfig reports a bad LOG_LEVEL or LOG_FORMAT.
var ErrLogConfig = errors.New("telemetry: bad log configuration")

// ModuleKey is the attribute that names the module writing a line; set it
// with Module or logger.With(ModuleKey, name).
const ModuleKey = "module"

// timestampLayout is RFC 3339 in UTC with milliseconds, the seeds' example.
const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

// LogConfig is how a process logs: LOG_LEVEL and LOG_FORMAT, read by the
// binary and parsed once by ParseLogConfig.
type LogConfig struct {
	// Level is the lowest level written. Default info.
	Level slog.Level
	// JSON writes the seeds' JSON lines; false writes text. Default false.
	JSON bool
}

// ParseLogConfig parses the values of LOG_LEVEL (debug|info|warn|error,
// default info) and LOG_FORMAT (json|text, default text). The error wraps
// ErrLogConfig and names each bad variable, one per line.
func ParseLogConfig(level, format string) (LogConfig, error) {
	var c LogConfig
	l, err := ParseLevel(level)
	c.Level = l
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "text":
	case "json":
		c.JSON = true
	default:
		err = errors.Join(err, fmt.Errorf("%w: LOG_FORMAT %q: want json or text", ErrLogConfig, format))
	}
	if err != nil {
		return LogConfig{}, err
	}
	return c, nil
}

// NewLogger builds a process logger writing to w as c says. module names
// the writer until Module changes it.
//
// The json format writes the seeds' lines:
//
//	{"timestamp":"2026-01-28T18:30:00.000Z","level":"INFO","module":"AllocationBalancer",
//	 "message":"Allocated session","context":{"clientId":"client-123","subscriptionId":"prod-sub2"}}
//
// In both formats secrets never reach w: an attribute whose key names a secret
// (token, secret, password, authorization, api_key, dsn, cookie) is written
// as [REDACTED], and bearer credentials, sk-ant- keys and URL passwords are
// cut out of every string, the message included.
func NewLogger(c LogConfig, w io.Writer, module string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	var inner slog.Handler
	if c.JSON {
		opts.ReplaceAttr = seedsKeys
		inner = slog.NewJSONHandler(w, opts)
	} else {
		inner = slog.NewTextHandler(w, opts)
	}
	h := &handler{inner: inner, module: module, nest: c.JSON}
	if f, ok := w.(flusher); ok {
		h.flush = f.Flush
	}
	return slog.New(h)
}

// flusher is a writer that holds lines back (BufferedWriter).
type flusher interface{ Flush() error }

// ParseLevel parses a LOG_LEVEL value: debug, info, warn (or warning), error;
// "" is info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w: LOG_LEVEL %q: want debug, info, warn or error", ErrLogConfig, s)
}

// Module returns l writing as module name.
func Module(l *slog.Logger, name string) *slog.Logger { return l.With(ModuleKey, name) }

// seedsKeys gives the JSON handler's built-ins the seeds' names and forms.
// Only the built-ins are at the top level besides module, message and
// context, which handler adds itself.
func seedsKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("timestamp", a.Value.Time().UTC().Format(timestampLayout))
	case slog.MessageKey:
		return slog.Attr{} // written as "message" after the module (see handler.Handle)
	case slog.LevelKey:
		a.Value = slog.StringValue(strings.ToUpper(a.Value.String()))
	}
	return a
}

// frame is one WithGroup level with the attributes added inside it.
type frame struct {
	name  string
	attrs []slog.Attr
}

// handler keeps the module at the top level, puts every other attribute
// under "context" (json) and redacts secrets. It never calls the inner
// handler's WithAttrs/WithGroup: it rebuilds the whole attribute tree per
// record, so the inner handler only ever sees module and context.
type handler struct {
	inner  slog.Handler
	module string
	nest   bool
	root   []slog.Attr  // attributes added before any group, redacted
	frames []frame      // open groups, outermost first, attributes redacted
	flush  func() error // a buffered writer's flush, called after WARN and above; nil: none
}

var _ slog.Handler = (*handler)(nil)

// Enabled reports whether the level is logged.
func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle writes r with its attributes redacted and grouped; a WARN or
// above leaves a buffered writer at once.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.handle(ctx, r)
	if h.flush != nil && r.Level >= slog.LevelWarn {
		if ferr := h.flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h *handler) handle(ctx context.Context, r slog.Record) error {
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, redactAttr(a))
		return true
	})
	// Build from the innermost open group outwards.
	for i := len(h.frames) - 1; i >= 0; i-- {
		f := h.frames[i]
		own = []slog.Attr{{Key: f.name, Value: slog.GroupValue(concat(f.attrs, own)...)}}
	}
	ctxAttrs := concat(h.root, own)

	msg := RedactString(r.Message)
	if !h.nest {
		out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
		if h.module != "" {
			out.AddAttrs(slog.String(ModuleKey, h.module))
		}
		out.AddAttrs(ctxAttrs...)
		return h.inner.Handle(ctx, out)
	}
	// The seeds' order: timestamp, level, module, message, context. The
	// built-in message is dropped by seedsKeys and written after the module.
	out := slog.NewRecord(r.Time, r.Level, "", r.PC)
	if h.module != "" {
		out.AddAttrs(slog.String(ModuleKey, h.module))
	}
	out.AddAttrs(slog.String("message", msg))
	if len(ctxAttrs) > 0 {
		out.AddAttrs(slog.Attr{Key: "context", Value: slog.GroupValue(ctxAttrs...)})
	}
	return h.inner.Handle(ctx, out)
}

// WithAttrs adds attributes; a top-level "module" attribute renames the module.
func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := h.clone()
	for _, a := range attrs {
		if a.Key == ModuleKey && len(c.frames) == 0 {
			c.module = a.Value.Resolve().String()
			continue
		}
		a = redactAttr(a)
		if len(c.frames) == 0 {
			c.root = append(c.root, a)
			continue
		}
		last := &c.frames[len(c.frames)-1]
		last.attrs = append(last.attrs, a)
	}
	return c
}

// WithGroup opens a group inside context.
func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := h.clone()
	c.frames = append(c.frames, frame{name: name})
	return c
}

// clone copies h so that appends never alias the parent's slices.
func (h *handler) clone() *handler {
	c := *h
	c.root = concat(nil, h.root)
	c.frames = make([]frame, len(h.frames))
	for i, f := range h.frames {
		c.frames[i] = frame{name: f.name, attrs: concat(nil, f.attrs)}
	}
	return &c
}

func concat(a, b []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
