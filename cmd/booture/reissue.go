package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/booture/booture/internal/store"
)

func (c *cli) memberReissueCommand(jsonFlag func(*cobra.Command) *cobra.Command, args func(int, string) cobra.PositionalArgs) *cobra.Command {
	var qr bool
	var outFile string
	cmd := jsonFlag(&cobra.Command{
		Use:   "reissue NAME",
		Short: "Give a member a new key pair and a complete configuration",
		Long: `Give the member a new key pair and print its complete configuration, with
its PrivateKey, for the booture's current endpoint and site: what a member
needs after the booture's address or site changed ("booture status" warns
which members hold an outdated configuration), or after losing a device.
The old key stops working at once: a device still using the old
configuration is cut off. Addresses and tunnel mode stay.

The WireGuard apps (Android, iOS, macOS, Windows) import it from the QR
code (--qr: "+" then "Scan from QR code"; on a computer, "Import tunnel
from file" with --out FILE); replace or delete the old tunnel there.

A member added with --pubkey keeps its own private key, which the booture
never saw, so the booture cannot make it a configuration the apps import
in one go. Two ways:
  - reissue anyway: the member gets a new key pair made by the booture
    and imports the QR code as above (its own key is dropped);
  - or keep its key: in the app, edit the tunnel (the pencil on Android,
    "Edit" on iOS and macOS, "Edit" on Windows) and change the peer's
    Endpoint (and Address and DNS if the site changed) to what
    "booture member show NAME --config" prints. Status keeps warning about
    that member until it is reissued.`,
		Args: args(1, "one NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return c.memberReissue(cmd.Context(), a[0], qr, outFile)
		},
	})
	cmd.Flags().BoolVar(&qr, "qr", false, "also show the configuration as a QR code")
	cmd.Flags().StringVar(&outFile, "out", "", "write the configuration to FILE (mode 0600) instead of printing it")
	return cmd
}

func (c *cli) memberReissue(ctx context.Context, name string, qr bool, outFile string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res, err := c.client().ReissueMember(ctx, name, qr)
	if err != nil {
		return err
	}
	if outFile != "" {
		if err := store.WriteFile(outFile, []byte(res.Config), 0o600); err != nil {
			return fmt.Errorf("member %s was given a new key (the old one no longer works), but its configuration could not be written: %w", name, err)
		}
	}
	if c.json {
		return c.printJSON(res)
	}
	if outFile != "" {
		fmt.Fprintf(c.out, "Member %s has a new key pair; configuration written to %s. The old configuration no longer connects.\n", name, outFile)
	} else {
		fmt.Fprint(c.out, res.Config)
	}
	if res.QR != "" {
		fmt.Fprintln(c.out)
		fmt.Fprint(c.out, res.QR)
	}
	return nil
}
