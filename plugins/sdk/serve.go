package sdk

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	pb "github.com/booture/booture/plugins/proto"
)

// EnvLogLevel is the environment variable through which the daemon tells
// plugins how much to log: debug, info (default), warn or error.
const EnvLogLevel = "BOOTURE_PLUGIN_LOG_LEVEL"

// NewLogger returns a logger whose records reach the daemon's log: it
// writes hclog's JSON lines to the process's standard error, which the
// daemon reads. Call it before Serve (Serve redirects os.Stderr). Never
// write to standard output before Serve: it carries go-plugin's handshake.
func NewLogger() *slog.Logger {
	return newLogger(os.Stderr, levelFromEnv())
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			// hclog's JSON keys, which go-plugin and the daemon understand.
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

func levelFromEnv() slog.Level {
	switch strings.ToLower(os.Getenv(EnvLogLevel)) {
	case "debug", "trace":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Serve runs p as a plugin program: it does go-plugin's handshake with the
// daemon (gRPC, protocol version 1, mutual TLS when the daemon asks for it)
// and serves calls until the daemon ends the process. It also exits, after
// calling p.Stop, when the daemon dies: go-plugin does not end plugins
// whose host is gone. Call it from main; it returns when the daemon closes
// the connection.
func Serve(p Plugin) {
	log := NewLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchParent(ctx, os.Getppid(), 500*time.Millisecond, func() {
		log.Warn("booture daemon is gone, stopping")
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := p.Stop(sctx); err != nil {
			log.Warn("stopping", "error", err)
		}
		os.Exit(0)
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pb.Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{
			pb.ProtocolVersion: {pb.PluginKey: &GRPCPlugin{Impl: p, Log: log}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "go-plugin",
			Output:     os.Stderr,
			JSONFormat: true,
			Level:      hclog.LevelFromString(hclogLevel(levelFromEnv())),
		}),
	})
}

// watchParent calls gone once the process's parent is no longer ppid: when
// the daemon dies the plugin is re-parented (to init or a subreaper). The
// daemon also sets a parent-death signal; this is the fallback for hosts
// where that signal was lost (the forking thread exited first).
func watchParent(ctx context.Context, ppid int, every time.Duration, gone func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				gone()
				return
			}
		}
	}
}
