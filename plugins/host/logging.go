package host

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"sort"
	"strings"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
)

// hcLogger hands go-plugin's own messages to slog at debug level: the
// manager logs what matters (starts, crashes, restarts) itself.
//
// Loggers made with Named are silent (level Off). go-plugin uses those for
// the plugin's stderr and stdio streams, and a silent logger makes it skip
// its own parsing of stderr, which panics the host on some malformed JSON
// lines ("@message" not a string); the manager parses stderr itself
// (pluginLog).
type hcLogger struct {
	log    *slog.Logger
	silent bool
	args   []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if l.silent || level == hclog.Off {
		return
	}
	l.log.Debug("go-plugin: "+msg, append(append([]any{}, l.args...), args...)...)
}
func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }
func (l *hcLogger) IsTrace() bool                 { return false }
func (l *hcLogger) IsDebug() bool                 { return !l.silent }
func (l *hcLogger) IsInfo() bool                  { return !l.silent }
func (l *hcLogger) IsWarn() bool                  { return !l.silent }
func (l *hcLogger) IsError() bool                 { return !l.silent }
func (l *hcLogger) ImpliedArgs() []any            { return l.args }
func (l *hcLogger) With(args ...any) hclog.Logger {
	return &hcLogger{log: l.log, silent: l.silent, args: append(append([]any{}, l.args...), args...)}
}
func (l *hcLogger) Name() string { return "" }
func (l *hcLogger) Named(string) hclog.Logger {
	return &hcLogger{log: l.log, silent: true}
}
func (l *hcLogger) ResetNamed(name string) hclog.Logger { return l.Named(name) }
func (l *hcLogger) SetLevel(hclog.Level)                {}
func (l *hcLogger) GetLevel() hclog.Level {
	if l.silent {
		return hclog.Off
	}
	return hclog.Debug
}
func (l *hcLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(nil), "", 0)
}
func (l *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	if l.silent {
		return io.Discard
	}
	return &lineWriter{emit: func(line string) { l.log.Debug("go-plugin: " + line) }}
}

// maxLine bounds a log line kept from a plugin.
const maxLine = 16 << 10

// lineWriter calls emit for each complete line written to it.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) > maxLine {
				w.flushLocked()
			}
			return n, nil
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.flushLocked()
	}
	return n, nil
}

func (w *lineWriter) flushLocked() {
	line := string(w.buf)
	if len(line) > maxLine {
		line = line[:maxLine] + "..."
	}
	w.buf = w.buf[:0]
	if strings.TrimSpace(line) != "" {
		w.emit(line)
	}
}

// pluginLog writes one line of a plugin's stderr to the daemon's log. The
// SDK writes hclog's JSON ("@level", "@message", other keys as attributes);
// anything else (a panic's stack trace, say) is logged as is.
func pluginLog(log *slog.Logger, line string) {
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec == nil {
		level := slog.LevelInfo
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			level = slog.LevelError
		}
		log.Log(context.Background(), level, "plugin output", "line", line)
		return
	}
	msg, _ := rec["@message"].(string)
	lvl, _ := rec["@level"].(string)
	if msg == "" {
		msg = "plugin output"
	}
	level := slog.LevelInfo
	switch strings.ToLower(lvl) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		switch k {
		case "@message", "@level", "@timestamp":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		attrs = append(attrs, strings.TrimPrefix(k, "@"), rec[k])
	}
	log.Log(context.Background(), level, msg, attrs...)
}
