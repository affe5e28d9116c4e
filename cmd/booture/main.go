// Command booture is the admin CLI of a booture. It talks to the local
// daemon (bootured) over its unix socket and never touches the network
// stack itself. See booture --help.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/booture/booture/internal/api"
)

// extraCommands are added by files built with tags (gendocs.go).
var extraCommands []func(root *cobra.Command) *cobra.Command

// version is set at build time like the daemon's (the Makefile's LDFLAGS).
var version = "0.1.0-dev"

// defaultSocket matches the daemon's default.
const defaultSocket = "/run/booture/bootured.sock"

type cli struct {
	socket string
	json   bool
	out    io.Writer
}

func (c *cli) client() *api.Client { return api.NewClient(c.socket) }

func main() {
	if err := newRoot(os.Stdout).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "booture:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func newRoot(out io.Writer) *cobra.Command {
	c := &cli{out: out}
	root := &cobra.Command{
		Use:   "booture",
		Short: "Manage this booture: its mesh, its members and its services",
		Long: `booture manages the local booture daemon (bootured) through its admin socket.

A booture links with other bootures into a mesh: "booture invite" on one of
them prints a token, "booture join TOKEN" on the new one links it. Members
of the association get VPN access with "booture member add NAME --qr": they
scan the code with the WireGuard app.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageError{err} })
	sock := os.Getenv("BOOTURE_SOCKET")
	if sock == "" {
		sock = defaultSocket
	}
	root.PersistentFlags().StringVar(&c.socket, "socket", sock, "admin socket of the daemon (env BOOTURE_SOCKET)")

	jsonFlag := func(cmd *cobra.Command) *cobra.Command {
		cmd.Flags().BoolVar(&c.json, "json", false, "print JSON")
		return cmd
	}
	args := func(n int, names string) cobra.PositionalArgs {
		return func(cmd *cobra.Command, a []string) error {
			if len(a) != n {
				return usageError{fmt.Errorf("%s takes %s (see booture %s --help)", cmd.CommandPath(), names, cmd.Name())}
			}
			return nil
		}
	}

	root.AddCommand(jsonFlag(&cobra.Command{
		Use:   "status",
		Short: "Show this booture, its mesh addresses and its peers",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.status(cmd.Context()) },
	}))
	root.AddCommand(jsonFlag(&cobra.Command{
		Use:   "peers",
		Short: "List the other bootures of the mesh",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.peers(cmd.Context()) },
	}))

	var expires, revoke string
	invite := jsonFlag(&cobra.Command{
		Use:   "invite",
		Short: "Print a one-time token another booture uses to join this mesh",
		Long: `Print a one-time invitation token. On the other booture, run
"booture join TOKEN" (or "booture join -" and paste it: then it does not show
in the process list). The token works once and expires (default 24h). Keep
it secret: whoever holds it can join the mesh until then.

"booture invite list" shows the invitations not yet used; "booture invite
--revoke ID" (or the token) cancels one: it then no longer works.`,
		Args: args(0, "no argument"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if revoke == "" {
				return c.invite(cmd.Context(), expires)
			}
			if cmd.Flags().Changed("expires") {
				return usageError{errors.New("--revoke and --expires do not go together")}
			}
			tok, err := readArg(cmd, revoke, "token or invitation id")
			if err != nil {
				return err
			}
			return c.revokeInvitation(cmd.Context(), tok)
		},
	})
	invite.Flags().StringVar(&expires, "expires", "24h", "validity of the token (e.g. 30m, 2h, 7d is 168h)")
	invite.Flags().StringVar(&revoke, "revoke", "", "revoke an unused invitation, by its id (see invite list) or its token (- reads it from standard input)")
	invite.AddCommand(jsonFlag(&cobra.Command{
		Use:   "list",
		Short: "List the invitations not yet used, revoked or expired (never their tokens)",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.invitations(cmd.Context()) },
	}))
	root.AddCommand(invite)

	root.AddCommand(jsonFlag(&cobra.Command{
		Use:   "join TOKEN|-",
		Short: "Join the mesh of the booture that printed TOKEN",
		Long: `Join the mesh of the booture that printed TOKEN with "booture invite".
With "-", the token is read from standard input: a token on the command
line shows in the process list (ps) while the join runs.`,
		Args: args(1, "one TOKEN (or - to read it from standard input)"),
		RunE: func(cmd *cobra.Command, a []string) error {
			tok, err := readArg(cmd, a[0], "token")
			if err != nil {
				return err
			}
			return c.join(cmd.Context(), tok)
		},
	}))
	root.AddCommand(jsonFlag(&cobra.Command{
		Use:   "expel NAME",
		Short: "Expel a booture from the mesh and change the mesh's secret",
		Long: `Expel the booture NAME: every remaining booture drops it at once and the
mesh's gossip key changes, so that it can no longer take part even if it
keeps running with its old state.`,
		Args: args(1, "one NAME"),
		RunE: func(cmd *cobra.Command, a []string) error { return c.expel(cmd.Context(), a[0]) },
	}))
	root.AddCommand(&cobra.Command{
		Use:   "leave",
		Short: "Leave the mesh gracefully (this booture then stands alone)",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.leave(cmd.Context()) },
	})
	root.AddCommand(c.memberCommand(jsonFlag, args))
	root.AddCommand(jsonFlag(&cobra.Command{
		Use:   "services",
		Short: "List the services of the whole mesh",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.services(cmd.Context()) },
	}))
	root.AddCommand(c.pluginCommand(jsonFlag, args))
	root.AddCommand(c.backupCommands(args)...)
	for _, extra := range extraCommands {
		root.AddCommand(extra(root))
	}
	return root
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, 60*time.Second)
}

func (c *cli) invite(ctx context.Context, expires string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	inv, err := c.client().Invite(ctx, expires)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(inv)
	}
	fmt.Fprintln(c.out, inv.Token)
	return nil
}

// maxStdinArg bounds what readArg reads from standard input: a token is
// under 200 characters.
const maxStdinArg = 4 << 10

// readArg returns arg, or with "-" the first line of standard input.
func readArg(cmd *cobra.Command, arg, what string) (string, error) {
	if arg != "-" {
		return arg, nil
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxStdinArg))
	if err != nil {
		return "", fmt.Errorf("reading the %s from standard input: %w", what, err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", usageError{fmt.Errorf("no %s on standard input", what)}
	}
	return line, nil
}

func (c *cli) invitations(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	list, err := c.client().Invitations(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.out, "No pending invitation.")
		return nil
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tEXPIRES")
	for _, inv := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", inv.ID, inv.Created.Local().Format(timeLayout), inv.Expires.Local().Format(timeLayout))
	}
	return tw.Flush()
}

// timeLayout shows invitations' times.
const timeLayout = "2006-01-02 15:04 MST"

func (c *cli) revokeInvitation(ctx context.Context, tokenOrID string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	inv, err := c.client().RevokeInvitation(ctx, tokenOrID)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(inv)
	}
	fmt.Fprintf(c.out, "Revoked invitation %s: its token no longer works.\n", inv.ID)
	return nil
}

func (c *cli) join(ctx context.Context, token string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := c.client().Join(ctx, token)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(res)
	}
	if res.Merged {
		fmt.Fprintf(c.out, "Linked with %s: its mesh joined this one (site %d).\n", res.Inviter, res.Site)
	} else {
		fmt.Fprintf(c.out, "Joined the mesh of %s: this booture now holds site %d (10.77.%d.0/24).\n", res.Inviter, res.Site, res.Site)
	}
	return nil
}

func (c *cli) expel(ctx context.Context, name string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := c.client().Expel(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(res)
	}
	fmt.Fprintf(c.out, "Expelled %s. New mesh key sent to %d booture(s)", res.Name, len(res.Notified))
	if len(res.Unreached) > 0 {
		fmt.Fprintf(c.out, "; %s will get it when reachable", strings.Join(res.Unreached, ", "))
	}
	fmt.Fprintln(c.out, ".")
	return nil
}

func (c *cli) leave(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.client().Leave(ctx); err != nil {
		return err
	}
	fmt.Fprintln(c.out, "Left the mesh. This booture now stands alone in a new mesh of its own.")
	return nil
}
