package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "OK\n")
		case "/json":
			fmt.Fprint(w, `{"installed":true,"maintenance":true,"db":{"ok":1}}`)
		case "/host":
			fmt.Fprint(w, r.Host)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprint(w, "short and stout")
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		probe HTTPProbe
		state State
		msg   string
	}{
		{"ok", HTTPProbe{URL: srv.URL + "/ok", Body: "OK"}, StateHealthy, ""},
		{"wrong body", HTTPProbe{URL: srv.URL + "/ok", Body: "pong"}, StateUnhealthy, `body "OK", want "pong"`},
		{"status", HTTPProbe{URL: srv.URL + "/teapot"}, StateUnhealthy, "status 418: short and stout"},
		{"accepted status", HTTPProbe{URL: srv.URL + "/teapot", Status: []int{418}}, StateHealthy, ""},
		{"json ok", HTTPProbe{URL: srv.URL + "/json", JSON: []JSONField{{Path: "installed", Want: true}, {Path: "db.ok", Want: 1}}}, StateHealthy, ""},
		{"json field", HTTPProbe{URL: srv.URL + "/json", JSON: []JSONField{{Path: "maintenance", Want: false, State: StateDegraded}}}, StateDegraded, "maintenance is true, want false"},
		{"json missing", HTTPProbe{URL: srv.URL + "/json", JSON: []JSONField{{Path: "needsDbUpgrade", Want: false, Message: "upgrade!"}}}, StateUnhealthy, "upgrade!"},
		{"not json", HTTPProbe{URL: srv.URL + "/ok", JSON: []JSONField{{Path: "x", Want: true}}}, StateUnhealthy, "not JSON"},
		{"host header", HTTPProbe{URL: srv.URL + "/host", Host: "cloud.diois.booture.internal", Body: "cloud.diois.booture.internal"}, StateHealthy, ""},
		{"timeout", HTTPProbe{URL: srv.URL + "/slow", Timeout: 50 * time.Millisecond}, StateUnhealthy, "no answer within 50ms"},
		{"classify", HTTPProbe{URL: srv.URL + "/teapot", Classify: func(code int, _ http.Header, body []byte) (State, string, bool) {
			return StateDegraded, "teapot", code == 418
		}}, StateDegraded, "teapot"},
		{"refused", HTTPProbe{URL: "http://127.0.0.1:1/"}, StateUnhealthy, "connection refused"},
	} {
		c := tc.probe.Check(ctx)
		if c.State != tc.state || !strings.Contains(c.Message, tc.msg) {
			t.Errorf("%s: %s %q; want %s with %q", tc.name, c.State, c.Message, tc.state, tc.msg)
		}
	}
}

func TestRunChecksSummarizes(t *testing.T) {
	fixed := func(name string, s State) Checker {
		return CheckFunc(func(context.Context) Check {
			return Check{Service: "svc", Name: name, State: s, Message: name + " says " + string(s)}
		})
	}
	h := RunChecks(context.Background(), fixed("a", StateHealthy), fixed("b", StateDegraded), fixed("c", StateUnknown))
	if h.State != StateUnknown || h.Message != "svc c: c says unknown" || len(h.Checks) != 3 || h.Checks[1].Name != "b" {
		t.Errorf("health = %+v", h)
	}
	if h := RunChecks(context.Background()); h.State != StateUnknown {
		t.Errorf("no checks = %+v", h)
	}
	if StateDegraded.Worse(StateUnhealthy) != StateUnhealthy || StateHealthy.Worse(StateDegraded) != StateDegraded {
		t.Error("Worse ordering")
	}
}

func TestLoggerWritesHclogJSON(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf, slog.LevelInfo)
	log.Debug("hidden")
	log.Warn("disk almost full", "free", 3, slog.Group("g", "k", "v"))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["@level"] != "warn" || rec["@message"] != "disk almost full" || rec["free"] != 3.0 || rec["@timestamp"] == nil {
		t.Errorf("record = %v", rec)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", rec["@timestamp"].(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	if g, _ := rec["g"].(map[string]any); g["k"] != "v" {
		t.Errorf("group = %v", rec["g"])
	}
}

func TestLevelFromEnv(t *testing.T) {
	t.Setenv(EnvLogLevel, "debug")
	if levelFromEnv() != slog.LevelDebug {
		t.Error("debug")
	}
	t.Setenv(EnvLogLevel, "")
	if levelFromEnv() != slog.LevelInfo {
		t.Error("default")
	}
}

// TestWatchParentCallsGone runs the parent watch on synctest's clock: it
// notices a parent that is gone at its first look, and with a live parent
// it looks every period for a minute without calling gone, until ctx ends.
func TestWatchParentCallsGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var called atomic.Bool
		done := make(chan struct{})
		go func() {
			watchParent(context.Background(), os.Getppid()+1000000, 10*time.Millisecond, func() { called.Store(true) })
			close(done)
		}()
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("watchParent did not notice at its first look")
		}
		if !called.Load() {
			t.Error("gone not called")
		}

		// While the parent lives, it waits for ctx.
		ctx, cancel := context.WithCancel(context.Background())
		done = make(chan struct{})
		go func() {
			watchParent(ctx, os.Getppid(), 10*time.Millisecond, func() { t.Error("gone called with a live parent") })
			close(done)
		}()
		time.Sleep(time.Minute) // 6000 looks
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("watchParent returned with a live parent before ctx ended")
		default:
		}
		cancel()
		<-done
	})
}

type panicky struct{}

func (panicky) Describe(context.Context) (Info, error) { panic("boom") }
func (panicky) Configure(context.Context, ConfigureRequest) (ConfigureResponse, error) {
	return ConfigureResponse{}, errors.New("no")
}
func (panicky) Health(context.Context) (Health, error) { return Health{}, nil }
func (panicky) Stop(context.Context) error             { return nil }

func TestServerRecoversPanics(t *testing.T) {
	s := &server{impl: panicky{}, log: slog.New(slog.DiscardHandler)}
	if _, err := s.Describe(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "plugin panicked: boom") {
		t.Errorf("err = %v", err)
	}
}
