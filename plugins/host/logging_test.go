package host

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPluginLogIsSafe(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := &lineWriter{emit: func(l string) { pluginLog(log, l) }}
	// go-plugin writes the line, then the newline.
	w.Write([]byte(`{"@level":"warn","@message":"disk low","@timestamp":"2026-01-01T00:00:00.000000Z","free":3}`))
	w.Write([]byte("\n"))
	w.Write([]byte(`{"@message":5,"@level":[]}` + "\npanic: oops\nnot json\n"))
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="disk low" free=3`,
		`level=INFO msg="plugin output"`, // the malformed record: no panic
		`level=ERROR msg="plugin output" line="panic: oops"`,
		`line="not json"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	w.Write([]byte(strings.Repeat("x", 2*maxLine)))
	if !strings.Contains(buf.String(), "...") {
		t.Error("long line not cut")
	}
}

func FuzzPluginLog(f *testing.F) {
	f.Add(`{"@level":"info","@message":"hi","k":{"a":[1,2]}}`)
	f.Add(`{"@message":null}`)
	f.Fuzz(func(t *testing.T, line string) {
		pluginLog(slog.New(slog.DiscardHandler), line)
	})
}
