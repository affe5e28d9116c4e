package main

import (
	"bufio"
	stdbytes "bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/booture/booture/internal/backup"
	"github.com/booture/booture/internal/store"
)

// defaultStateDir matches the daemon's default.
const defaultStateDir = "/var/lib/booture"

func (c *cli) backupCommands(args func(int, string) cobra.PositionalArgs) []*cobra.Command {
	var passFile string
	bk := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write an encrypted backup of this booture to FILE",
		Long: `Write this booture's identity (its private key), its mesh credentials, its
members, its plugin pins and its config file into FILE (mode 0600),
encrypted with a passphrase read from the terminal or from
--passphrase-file. The daemon keeps running.

The file is an age file (age-encryption.org) with a passphrase (scrypt)
recipient. Keep it and its passphrase apart: together they let anyone run
this booture. Restore it with "booture restore FILE" on a new machine.`,
		Args: args(1, "one FILE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return c.backup(cmd.Context(), a[0], passFile)
		},
	}
	bk.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from the first line of PATH instead of the terminal")

	var stateDir, configPath string
	var force bool
	rs := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a booture from a backup into the state directory (daemon stopped)",
		Long: `Restore the booture saved in FILE by "booture backup": its key, its mesh,
its site and its members come back as they were, so members' existing
configurations keep working. Stop bootured first: restore writes the state
directory itself. A state directory that holds another booture is refused
unless --force.

The config file saved in the backup is written back to where it was (or
--config PATH) when no file is there; when a different one is there, it is
written next to it with the suffix .restored.

A backup older than the mesh's last change of secret (an expulsion since)
catches up by itself once the booture runs: the other bootures hand it the
current key.`,
		Args: args(1, "one FILE"),
		RunE: func(cmd *cobra.Command, a []string) error {
			return c.restore(a[0], stateDir, passFile, configPath, force)
		},
	}
	rs.Flags().StringVar(&stateDir, "state-dir", defaultStateDir, "the daemon's state directory")
	rs.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from the first line of PATH instead of the terminal")
	rs.Flags().StringVar(&configPath, "config", "", "where to write the saved config file (default: where it was)")
	rs.Flags().BoolVar(&force, "force", false, "replace the booture the state directory holds")
	return []*cobra.Command{bk, rs}
}

func (c *cli) backup(ctx context.Context, file, passFile string) error {
	pass, err := readPassphrase(passFile, true)
	if err != nil {
		return err
	}
	if err := backup.CheckPassphrase(pass); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	snap, err := c.client().Backup(ctx)
	if err != nil {
		return err
	}
	b := backup.FromSnapshot(snap)
	data, err := backup.Encrypt(b, pass, 0)
	if err != nil {
		return err
	}
	if err := store.WriteFile(file, data, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "Backup of %s written to %s.\n", b.Describe(), file)
	return nil
}

func (c *cli) restore(file, stateDir, passFile, configPath string, force bool) error {
	data, err := readLimited(file)
	if err != nil {
		return err
	}
	pass, err := readPassphrase(passFile, false)
	if err != nil {
		return err
	}
	b, err := backup.Decrypt(data, pass)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	res, err := backup.Restore(b, stateDir, backup.RestoreOptions{Force: force})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.out, "Restored %s into %s.\n", b.Describe(), stateDir)
	if res.Replaced != "" {
		fmt.Fprintf(c.out, "It replaced the booture with key %s.\n", res.Replaced)
	}
	if configPath == "" {
		configPath = b.ConfigPath
	}
	if len(b.Config) > 0 && configPath != "" {
		msg, err := restoreConfig(b.Config, configPath)
		if err != nil {
			return fmt.Errorf("the state is restored, but the config file is not: %w", err)
		}
		fmt.Fprintln(c.out, msg)
	}
	fmt.Fprintln(c.out, "Start bootured: it rejoins its mesh and catches up with what changed since the backup.")
	return nil
}

// restoreConfig writes the saved config file to path unless a different
// one is there (then next to it).
func restoreConfig(content []byte, path string) (string, error) {
	cur, err := os.ReadFile(path)
	switch {
	case err == nil && stdbytes.Equal(cur, content):
		return "The config file " + path + " is already the saved one.", nil
	case err == nil:
		alt := path + ".restored"
		if err := store.WriteFile(alt, content, 0o640); err != nil {
			return "", err
		}
		return fmt.Sprintf("A different config file is at %s: the saved one is in %s (compare them).", path, alt), nil
	case !errors.Is(err, os.ErrNotExist):
		return "", err
	}
	if err := store.EnsureDir(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := store.WriteFile(path, content, 0o640); err != nil {
		return "", err
	}
	return "Config file written to " + path + ".", nil
}

// readLimited reads a backup file, refusing one too big to be one.
func readLimited(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, backup.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > backup.MaxFileSize {
		return nil, fmt.Errorf("%s: %w (larger than %d MiB)", file, backup.ErrNotBackup, backup.MaxFileSize>>20)
	}
	return data, nil
}

// readPassphrase reads the passphrase from the first line of passFile, or
// from the terminal (twice when confirm), never from the command line.
func readPassphrase(passFile string, confirm bool) (string, error) {
	if passFile != "" {
		f, err := os.Open(passFile)
		if err != nil {
			return "", fmt.Errorf("passphrase file: %w", err)
		}
		defer f.Close()
		line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("passphrase file: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", fmt.Errorf("passphrase file %s: the first line is empty", passFile)
		}
		return line, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return "", errors.New("no terminal to read the passphrase from: use --passphrase-file PATH")
	}
	defer tty.Close()
	ask := func(prompt string) (string, error) {
		fmt.Fprint(tty, prompt)
		p, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return string(p), err
	}
	p, err := ask("Passphrase: ")
	if err != nil {
		return "", fmt.Errorf("reading the passphrase: %w", err)
	}
	if confirm {
		again, err := ask("Passphrase again: ")
		if err != nil {
			return "", fmt.Errorf("reading the passphrase: %w", err)
		}
		if again != p {
			return "", errors.New("the two passphrases differ")
		}
	}
	if p == "" {
		return "", errors.New("empty passphrase")
	}
	return p, nil
}
