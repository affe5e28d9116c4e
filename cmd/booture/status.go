package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/booture/booture/internal/api"
)

func (c *cli) status(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := c.client().Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(st)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "booture\t%s (version %s)\n", st.Name, st.Version)
	fmt.Fprintf(w, "mesh address\t%s, %s\n", st.MeshIPv4, st.MeshIPv6)
	fmt.Fprintf(w, "site\t%d: %s, %s\n", st.Site, st.SiteIPv4, st.SiteIPv6)
	fmt.Fprintf(w, "public key\t%s\n", st.PublicKey)
	fmt.Fprintf(w, "endpoint\t%s (gossip %s)\n", st.Endpoint, st.Gossip)
	fmt.Fprintf(w, "wireguard\t%s, %s, port %d, mtu %d\n", st.WireGuard.Interface, st.WireGuard.Mode, st.WireGuard.ListenPort, st.WireGuard.MTU)
	fmt.Fprintf(w, "mesh\t%s (key changes: %d)\n", st.MeshID, st.Epoch)
	fmt.Fprintf(w, "members\t%d (their endpoint: %s)\n", st.Members, orDash(st.MemberEndpoint))
	for _, m := range st.MembersOutdated {
		fmt.Fprintf(w, "WARNING\tmember %s has a configuration for %s%s: give it a new one with \"booture member reissue %s --qr\"\n",
			m.Name, m.IssuedEndpoint, siteNote(m.IssuedSite), m.Name)
	}
	if st.Reconcile.LastError != "" {
		fmt.Fprintf(w, "network\tERROR: %s\n", st.Reconcile.LastError)
	}
	if st.Expelled {
		fmt.Fprintf(w, "WARNING\tthis booture was expelled from its mesh\n")
	}
	for _, cf := range st.Conflicts {
		switch {
		case cf.Winner != "" && cf.Loser == st.Name:
			fmt.Fprintf(w, "site conflict\tsite %d was also held by %s, which claimed it first: this booture moved to site %d (members need their new configuration)\n", cf.Site, cf.Winner, cf.NewSite)
		case cf.Winner != "":
			fmt.Fprintf(w, "site conflict\tsite %d: %s kept it, %s moved to site %d\n", cf.Site, cf.Winner, cf.Loser, cf.NewSite)
		default:
			fmt.Fprintf(w, "site conflict\tsite %d: %s holds a site another booture claimed first; it is not routed until it moves\n", cf.Site, cf.Loser)
		}
	}
	w.Flush()
	fmt.Fprintln(c.out)
	printPeers(c.out, st.Peers)
	return nil
}

func (c *cli) peers(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	peers, err := c.client().Peers(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(peers)
	}
	printPeers(c.out, peers)
	return nil
}

func printPeers(out io.Writer, peers []api.Peer) {
	if len(peers) == 0 {
		fmt.Fprintln(out, "No other booture in the mesh yet: run \"booture invite\" and \"booture join TOKEN\" on the other one.")
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PEER\tSTATE\tMESH IPV4\tENDPOINT\tHANDSHAKE\tRECEIVED\tSENT")
	for _, p := range peers {
		state := p.State
		if p.SiteConflict {
			state += " (site conflict)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, state, p.MeshIPv4, orDash(p.Endpoint), ago(p.LastHandshake), bytes(p.RxBytes), bytes(p.TxBytes))
	}
	w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago prints a handshake time as an age.
func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	d := time.Since(*t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	default:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
}

func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func siteNote(site string) string {
	if site == "" {
		return ""
	}
	return " (site " + site + ")"
}
