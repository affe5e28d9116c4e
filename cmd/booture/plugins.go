package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (c *cli) pluginCommand(jsonFlag func(*cobra.Command) *cobra.Command, args func(int, string) cobra.PositionalArgs) *cobra.Command {
	p := &cobra.Command{
		Use:   "plugin",
		Short: "Manage the plugins that expose this booture's services",
	}
	p.AddCommand(jsonFlag(&cobra.Command{
		Use:   "list",
		Short: "List plugins with their state, version and checksum",
		Args:  args(0, "no argument"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return c.pluginList(cmd.Context()) },
	}))
	p.AddCommand(jsonFlag(&cobra.Command{
		Use:   "install PATH",
		Short: "Install a plugin binary (copied and pinned by its SHA-256)",
		Long: `Install a plugin binary (copied and pinned by its SHA-256).

PATH must be named booture-plugin-NAME, be owned by root and be writable by
no one else (not by its group, not by others): the daemon runs it, and the
members of the admin socket's group (socket_group) may run this command, so
a file they could have written is refused. A binary found in a plugin
directory is checked the same way when it is pinned on first use.`,
		Args: args(1, "one PATH"),
		RunE: func(cmd *cobra.Command, a []string) error {
			path, err := filepath.Abs(a[0])
			if err != nil {
				return err
			}
			ctx, cancel := withTimeout(cmd.Context())
			defer cancel()
			pl, err := c.client().InstallPlugin(ctx, path)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(pl)
			}
			fmt.Fprintf(c.out, "Installed plugin %s (sha256 %s). Run \"booture plugin reload %s\" to switch a running one to it.\n", pl.Name, pl.SHA256, pl.Name)
			return nil
		},
	}))
	p.AddCommand(jsonFlag(&cobra.Command{
		Use:   "reload NAME",
		Short: "Switch a running plugin to its newly installed binary, without dropping requests",
		Args:  args(1, "one NAME"),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx, cancel := withTimeout(cmd.Context())
			defer cancel()
			pl, err := c.client().ReloadPlugin(ctx, a[0])
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(pl)
			}
			fmt.Fprintf(c.out, "Plugin %s reloaded: version %s, %s.\n", pl.Name, pl.Version, pl.State)
			return nil
		},
	}))
	return p
}

func (c *cli) pluginList(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	pls, err := c.client().Plugins(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(pls)
	}
	if len(pls) == 0 {
		fmt.Fprintln(c.out, "No plugin found.")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PLUGIN\tVERSION\tSTATE\tRESTARTS\tSERVICES\tSHA256\tLAST ERROR")
	for _, p := range pls {
		sum := p.SHA256
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, orDash(p.Version), p.State, p.Restarts, orDash(strings.Join(p.Services, ",")), sum, orDash(p.LastError))
	}
	return w.Flush()
}

func (c *cli) services(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	svcs, err := c.client().Services(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(svcs)
	}
	if len(svcs) == 0 {
		fmt.Fprintln(c.out, "No service in the mesh yet: declare one in the config file ([[service]]).")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tBOOTURE\tACCESS\tHEALTH\tURL")
	for _, s := range svcs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Booture, s.Access, s.Health, s.URL)
	}
	return w.Flush()
}
