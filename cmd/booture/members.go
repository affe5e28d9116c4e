package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/store"
)

func (c *cli) memberCommand(jsonFlag func(*cobra.Command) *cobra.Command, args func(int, string) cobra.PositionalArgs) *cobra.Command {
	m := &cobra.Command{
		Use:   "member",
		Short: "Manage the members who reach the mesh through this booture (VPN)",
	}
	var req api.MemberAddRequest
	var outFile string
	add := jsonFlag(&cobra.Command{
		Use:   "add NAME",
		Short: "Add a member and print its WireGuard configuration",
		Long: `Add a member and print the configuration to import into the WireGuard app
(or wg-quick). With --qr, it is also shown as a QR code to scan with a phone.

Without --pubkey, the booture generates the member's key pair: the private
key is in this configuration only and is never stored, so hand it over now.
With --pubkey, the member keeps its own private key and the configuration
has a placeholder for it.`,
		Args: args(1, "one NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			req.Name = a[0]
			if cmd.Flags().Changed("pubkey") && strings.TrimSpace(req.PublicKey) == "" {
				return usageError{fmt.Errorf("--pubkey is empty: give the member's public key (wg pubkey prints it), or leave --pubkey out to have the booture make a key pair")}
			}
			return c.memberAdd(cmd.Context(), req, outFile)
		},
	})
	add.Flags().StringVar(&req.PublicKey, "pubkey", "", "the member's own WireGuard public key (base64)")
	add.Flags().BoolVar(&req.FullTunnel, "full-tunnel", false, "send all the member's traffic through the booture (not only the mesh's)")
	add.Flags().BoolVar(&req.QR, "qr", false, "also show the configuration as a QR code")
	add.Flags().StringVar(&outFile, "out", "", "write the configuration to FILE (mode 0600) instead of printing it")
	m.AddCommand(add)

	m.AddCommand(jsonFlag(&cobra.Command{
		Use:   "list",
		Short: "List the members with their addresses, state and traffic",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.memberList(cmd.Context()) },
	}))
	var showConfig, showQR bool
	show := jsonFlag(&cobra.Command{
		Use:   "show NAME",
		Short: "Show a member (--config: its configuration, without the private key)",
		Args:  args(1, "one NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return c.memberShow(cmd.Context(), a[0], showConfig, showQR)
		},
	})
	show.Flags().BoolVar(&showConfig, "config", false, "print the member's configuration (with a placeholder for its private key)")
	show.Flags().BoolVar(&showQR, "qr", false, "with --config, also show it as a QR code")
	m.AddCommand(show)
	m.AddCommand(c.memberReissueCommand(jsonFlag, args))
	for _, v := range []struct {
		verb, short string
	}{
		{"disable", "Cut a member off at once (it keeps its addresses)"},
		{"enable", "Let a disabled member in again, with the same configuration"},
		{"remove", "Remove a member for good"},
	} {
		verb := v.verb
		m.AddCommand(&cobra.Command{
			Use:   verb + " NAME",
			Short: v.short,
			Args:  args(1, "one NAME"),
			RunE:  func(cmd *cobra.Command, a []string) error { return c.memberSet(cmd.Context(), verb, a[0]) },
		})
	}
	return m
}

func (c *cli) memberAdd(ctx context.Context, req api.MemberAddRequest, outFile string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := c.client().AddMember(ctx, req)
	if err != nil {
		return err
	}
	if outFile != "" {
		if err := store.WriteFile(outFile, []byte(res.Config), 0o600); err != nil {
			return fmt.Errorf("member %s was added, but its configuration could not be written: %w", res.Member.Name, err)
		}
	}
	if c.json {
		return c.printJSON(res)
	}
	if outFile != "" {
		fmt.Fprintf(c.out, "Member %s added (%s, %s); configuration written to %s.\n", res.Member.Name, res.Member.IPv4, res.Member.IPv6, outFile)
	} else {
		fmt.Fprint(c.out, res.Config)
	}
	if res.QR != "" {
		fmt.Fprintln(c.out)
		fmt.Fprint(c.out, res.QR)
	}
	return nil
}

func (c *cli) memberList(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	ms, err := c.client().Members(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(ms)
	}
	if len(ms) == 0 {
		fmt.Fprintln(c.out, "No member yet: add one with \"booture member add NAME --qr\".")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tSTATE\tIPV4\tIPV6\tTUNNEL\tHANDSHAKE\tRECEIVED\tSENT")
	for _, m := range ms {
		tunnel := "split"
		if m.FullTunnel {
			tunnel = "full"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.State, m.IPv4, m.IPv6, tunnel, ago(m.LastHandshake), bytes(m.RxBytes), bytes(m.TxBytes))
	}
	return w.Flush()
}

func (c *cli) memberShow(ctx context.Context, name string, config, qr bool) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if config {
		mc, err := c.client().MemberConfig(ctx, name, qr)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(mc)
		}
		fmt.Fprint(c.out, mc.Config)
		if mc.QR != "" {
			fmt.Fprintln(c.out)
			fmt.Fprint(c.out, mc.QR)
		}
		return nil
	}
	m, err := c.client().Member(ctx, name)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(m)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "member\t%s\n", m.Name)
	fmt.Fprintf(w, "state\t%s\n", m.State)
	fmt.Fprintf(w, "addresses\t%s, %s\n", m.IPv4, m.IPv6)
	fmt.Fprintf(w, "public key\t%s\n", m.PublicKey)
	fmt.Fprintf(w, "full tunnel\t%v\n", m.FullTunnel)
	fmt.Fprintf(w, "added\t%s\n", m.Created.Format("2006-01-02 15:04"))
	fmt.Fprintf(w, "endpoint\t%s\n", orDash(m.Endpoint))
	fmt.Fprintf(w, "handshake\t%s\n", ago(m.LastHandshake))
	fmt.Fprintf(w, "traffic\treceived %s, sent %s\n", bytes(m.RxBytes), bytes(m.TxBytes))
	return w.Flush()
}

func (c *cli) memberSet(ctx context.Context, verb, name string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var err error
	switch verb {
	case "disable":
		_, err = c.client().SetMemberEnabled(ctx, name, false)
	case "enable":
		_, err = c.client().SetMemberEnabled(ctx, name, true)
	case "remove":
		err = c.client().RemoveMember(ctx, name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "Member %s %sd.\n", name, verb)
	return nil
}
