package nextcloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Runner runs a command and returns its standard output.
type Runner interface {
	Run(ctx context.Context, argv []string) (stdout string, err error)
}

// ExecRunner runs commands as processes (no shell).
type ExecRunner struct{}

// ErrExit is wrapped by ExecRunner's error when the command ran and exited
// non-zero.
var ErrExit = errors.New("command failed")

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, argv []string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), fmt.Errorf("%w: %s: exit %d: %s", ErrExit, strings.Join(argv, " "), ee.ExitCode(), strings.TrimSpace(errb.String()))
		}
		return out.String(), fmt.Errorf("running %s: %w", strings.Join(argv, " "), err)
	}
	return out.String(), nil
}

// Occ applies system settings with Nextcloud's occ command.
type Occ struct {
	Cmd []string // e.g. sudo -u www-data php /var/www/nextcloud/occ
	Run Runner
}

// occTimeout bounds one occ call (a PHP start, a database query).
const occTimeout = time.Minute

func (o Occ) call(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, occTimeout)
	defer cancel()
	return o.Run.Run(ctx, append(append([]string{}, o.Cmd...), append([]string{"--no-interaction", "--no-ansi"}, args...)...))
}

// list returns a system setting's values, one per line of
// `occ config:system:get KEY`, which exits 1 for a missing key.
func (o Occ) list(ctx context.Context, key string) ([]string, error) {
	out, err := o.call(ctx, "config:system:get", key)
	if err != nil {
		if errors.Is(err, ErrExit) && strings.TrimSpace(out) == "" {
			return nil, nil // not set
		}
		return nil, fmt.Errorf("reading %s: %w", key, err)
	}
	var vals []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			vals = append(vals, l)
		}
	}
	return vals, nil
}

// Apply makes Nextcloud's config hold s: list entries are added (never
// removed: the admin's own names stay trusted), single values replaced.
// It returns the keys it changed.
func (o Occ) Apply(ctx context.Context, s Settings) ([]string, error) {
	var changed []string
	for _, l := range []struct {
		key  string
		want []string
	}{{"trusted_domains", s.TrustedDomains}, {"trusted_proxies", s.TrustedProxies}} {
		have, err := o.list(ctx, l.key)
		if err != nil {
			return changed, err
		}
		n := len(have)
		for _, v := range l.want {
			if slices.Contains(have, v) {
				continue
			}
			if _, err := o.call(ctx, "config:system:set", l.key, strconv.Itoa(n), "--value="+v); err != nil {
				return changed, fmt.Errorf("setting %s: %w", l.key, err)
			}
			n++
			changed = append(changed, l.key)
		}
	}
	for _, kv := range [][2]string{
		{"overwritehost", s.OverwriteHost},
		{"overwriteprotocol", s.OverwriteProtocol},
		{"overwritecondaddr", s.OverwriteCondAddr},
	} {
		have, err := o.list(ctx, kv[0])
		if err != nil {
			return changed, err
		}
		if len(have) == 1 && have[0] == kv[1] {
			continue
		}
		if _, err := o.call(ctx, "config:system:set", kv[0], "--value="+kv[1]); err != nil {
			return changed, fmt.Errorf("setting %s: %w", kv[0], err)
		}
		changed = append(changed, kv[0])
	}
	return slices.Compact(changed), nil
}
