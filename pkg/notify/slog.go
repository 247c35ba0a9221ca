package notify

import (
	"context"
	"encoding/json"
	"log/slog"
)

// SlogLogger adapts l to Logger for the cmd layer: the log channel writes one
// line per event at the level of its severity (info → INFO, warning → WARN,
// critical → ERROR) with the event's fields; warnings go out at WARN.
func SlogLogger(l *slog.Logger) Logger { return slogLogger{l: l} }

type slogLogger struct{ l *slog.Logger }

var _ Logger = slogLogger{}

func (s slogLogger) Notify(ctx context.Context, e Event) {
	level := slog.LevelInfo
	switch e.Severity {
	case SeverityWarning:
		level = slog.LevelWarn
	case SeverityCritical:
		level = slog.LevelError
	}
	// A map prints readably in both the JSON and the text handler, where
	// raw JSON bytes would not.
	var data map[string]any
	_ = json.Unmarshal(e.Data, &data)
	s.l.Log(ctx, level, e.Message,
		slog.String("eventId", e.ID), slog.String("type", e.Type), slog.String("severity", e.Severity),
		slog.String("subscriptionId", e.SubscriptionID), slog.Any("data", data),
		slog.Time("eventTime", e.Time))
}

func (s slogLogger) Warn(ctx context.Context, msg string, args ...any) {
	s.l.WarnContext(ctx, msg, args...)
}
