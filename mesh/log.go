package mesh

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newMemberlistLogger turns memberlist's "[LEVEL] memberlist: message" lines
// into slog records of the right level.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&memberlistWriter{log: l.With("subsystem", "gossip")}, "", 0)
}

type memberlistWriter struct{ log *slog.Logger }

var levelTags = []struct {
	tag   []byte
	level slog.Level
}{
	{[]byte("[DEBUG]"), slog.LevelDebug},
	{[]byte("[INFO]"), slog.LevelDebug}, // memberlist's info is chatty
	{[]byte("[WARN]"), slog.LevelWarn},
	{[]byte("[ERR]"), slog.LevelError},
	{[]byte("[ERROR]"), slog.LevelError},
}

func (w *memberlistWriter) Write(p []byte) (int, error) {
	msg := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, t := range levelTags {
		if i := bytes.Index(msg, t.tag); i >= 0 {
			level = t.level
			msg = bytes.TrimSpace(msg[i+len(t.tag):])
			break
		}
	}
	msg = bytes.TrimPrefix(msg, []byte("memberlist: "))
	w.log.Log(context.Background(), level, string(msg))
	return len(p), nil
}
