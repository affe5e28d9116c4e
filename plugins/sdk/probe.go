package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Checker is one health probe.
type Checker interface {
	Check(ctx context.Context) Check
}

// CheckFunc adapts a function to Checker.
type CheckFunc func(ctx context.Context) Check

// Check calls f.
func (f CheckFunc) Check(ctx context.Context) Check { return f(ctx) }

// RunChecks runs the checkers concurrently and sums them up: the overall
// state is the worst one, the message that of the first check (in the
// given order) in that state.
func RunChecks(ctx context.Context, checkers ...Checker) Health {
	checks := make([]Check, len(checkers))
	var wg sync.WaitGroup
	for i, c := range checkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			checks[i] = c.Check(ctx)
			if checks[i].Duration == 0 {
				checks[i].Duration = time.Since(start)
			}
		}()
	}
	wg.Wait()
	return Summarize(checks)
}

// Summarize builds a Health from checks; no checks means unknown.
func Summarize(checks []Check) Health {
	if len(checks) == 0 {
		return Health{State: StateUnknown, Message: "no checks"}
	}
	h := Health{State: StateHealthy, Checks: checks}
	for _, c := range checks {
		h.State = h.State.Worse(c.State)
	}
	for _, c := range checks {
		if c.State == h.State && c.State != StateHealthy {
			h.Message = c.Name + ": " + c.Message
			if c.Service != "" {
				h.Message = c.Service + " " + h.Message
			}
			break
		}
	}
	return h
}

// HTTPProbe checks an HTTP endpoint: the status code, and optionally the
// body or fields of a JSON body. Any failure to get an answer (refused,
// timeout) is unhealthy.
type HTTPProbe struct {
	// Service and Name label the resulting Check.
	Service string
	Name    string
	// URL is requested with GET.
	URL string
	// Host, when set, is sent as the Host header (e.g. the mesh name, to
	// see the upstream accept it).
	Host string
	// Header is added to the request.
	Header http.Header
	// Status lists the accepted status codes; empty means 200 only.
	Status []int
	// Body, when set, must equal the response body with surrounding
	// white space trimmed.
	Body string
	// JSON fields the (JSON object) body must hold.
	JSON []JSONField
	// Classify, when set, sees the answer first: when it returns ok, its
	// state and message are the result and no other rule applies. Use it
	// for answers that mean something specific (a maintenance page, say).
	Classify func(status int, header http.Header, body []byte) (state State, message string, ok bool)
	// Timeout bounds the whole request; 0 means 5 s.
	Timeout time.Duration
	// Client is used when set; by default a client that follows no
	// redirect, uses no proxy and keeps no idle connection.
	Client *http.Client
}

// JSONField is a field of a JSON body an HTTPProbe compares.
type JSONField struct {
	// Path is the field's dot-separated path, e.g. "installed" or "db.ok".
	Path string
	// Want is the expected value as encoding/json decodes it: bool,
	// string, float64 or nil.
	Want any
	// State is the result when the field differs; zero means unhealthy.
	State State
	// Message is the message when the field differs; empty means one that
	// names the field and both values.
	Message string
}

// maxProbeBody bounds what a probe reads of a body.
const maxProbeBody = 1 << 20

// Check runs the probe.
func (p HTTPProbe) Check(ctx context.Context) Check {
	start := time.Now()
	c := Check{Service: p.Service, Name: p.Name}
	c.State, c.Message = p.run(ctx)
	c.Duration = time.Since(start)
	return c
}

func (p HTTPProbe) run(ctx context.Context) (State, string) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return StateUnhealthy, fmt.Sprintf("bad probe URL: %v", err)
	}
	for k, vs := range p.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if p.Host != "" {
		req.Host = p.Host
	}
	client := p.Client
	if client == nil {
		client = &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return StateUnhealthy, fmt.Sprintf("GET %s: no answer within %s", p.URL, timeout)
		}
		return StateUnhealthy, fmt.Sprintf("GET %s: %v", p.URL, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return StateUnhealthy, fmt.Sprintf("GET %s: reading body: %v", p.URL, err)
	}
	if p.Classify != nil {
		if st, msg, ok := p.Classify(resp.StatusCode, resp.Header, body); ok {
			return st, msg
		}
	}
	want := p.Status
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, resp.StatusCode) {
		return StateUnhealthy, fmt.Sprintf("GET %s: status %d%s", p.URL, resp.StatusCode, snippet(body))
	}
	if p.Body != "" {
		if got := strings.TrimSpace(string(body)); got != p.Body {
			return StateUnhealthy, fmt.Sprintf("GET %s: body %q, want %q", p.URL, clip(got, 60), p.Body)
		}
	}
	if len(p.JSON) == 0 {
		return StateHealthy, ""
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return StateUnhealthy, fmt.Sprintf("GET %s: body is not JSON: %v", p.URL, err)
	}
	state, msgs := StateHealthy, []string(nil)
	for _, f := range p.JSON {
		got, found := lookup(doc, f.Path)
		if found && jsonEqual(got, f.Want) {
			continue
		}
		st := f.State
		if st == "" {
			st = StateUnhealthy
		}
		msg := f.Message
		if msg == "" {
			if found {
				msg = fmt.Sprintf("%s is %s, want %s", f.Path, jsonText(got), jsonText(f.Want))
			} else {
				msg = fmt.Sprintf("%s missing, want %s", f.Path, jsonText(f.Want))
			}
		}
		state = state.Worse(st)
		msgs = append(msgs, msg)
	}
	return state, strings.Join(msgs, "; ")
}

// lookup follows a dot-separated path into decoded JSON.
func lookup(doc any, path string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func jsonEqual(a, b any) bool {
	switch bv := b.(type) {
	case int:
		b = float64(bv)
	case int64:
		b = float64(bv)
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func unwrapURLError(err error) error {
	// "Get \"URL\": dial tcp ...: connect: connection refused" repeats the
	// URL the message already has.
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return ""
	}
	return ": " + clip(s, 80)
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
