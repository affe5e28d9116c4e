package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DefaultTimeout bounds every command the lab runs unless said otherwise.
const DefaultTimeout = 30 * time.Second

// Result is the outcome of a command.
type Result struct {
	Args   []string
	Stdout string
	Stderr string
	// Code is the exit code; -1 when the command did not run to its end.
	Code int
	// Err is set when the command could not start, was killed or timed
	// out (not for a non-zero exit: see Code).
	Err error
}

// OK reports whether the command ran and exited 0.
func (r Result) OK() bool { return r.Err == nil && r.Code == 0 }

// Error returns nil when r is OK, else an error with the command, its exit
// code and its stderr.
func (r Result) Error() error {
	if r.OK() {
		return nil
	}
	msg := strings.TrimSpace(r.Stderr)
	if msg == "" {
		msg = strings.TrimSpace(r.Stdout)
	}
	if r.Err != nil {
		return fmt.Errorf("%s: %w: %s", r.Cmd(), r.Err, msg)
	}
	return fmt.Errorf("%s: exit %d: %s", r.Cmd(), r.Code, msg)
}

// Cmd returns the command line.
func (r Result) Cmd() string { return strings.Join(r.Args, " ") }

// run runs a command with a timeout (DefaultTimeout if 0); env entries are
// added to the environment. The command gets its own process group, all
// killed on timeout.
func run(ctx context.Context, timeout time.Duration, env []string, args ...string) Result {
	return runInput(ctx, timeout, env, "", args...)
}

// runStdin runs a command with DefaultTimeout and stdin as its input.
func runStdin(stdin string, args ...string) Result {
	return runInput(context.Background(), 0, nil, stdin, args...)
}

func runInput(ctx context.Context, timeout time.Duration, env []string, stdin string, args ...string) Result {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := Result{Args: args, Code: -1}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if len(env) > 0 {
		cmd.Env = append(cmd.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	err := cmd.Run()
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Err = fmt.Errorf("timed out after %v", timeout)
	case errors.As(err, &ee) && ee.Exited():
		res.Code = ee.ExitCode()
	case err != nil:
		res.Err = err
	default:
		res.Code = 0
	}
	return res
}

// Eventually calls check every interval until it returns nil, and returns
// nil; or, when timeout passes (or ctx ends), the last error check returned.
func Eventually(ctx context.Context, timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("still failing after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

func nilContext() context.Context { return context.Background() }
