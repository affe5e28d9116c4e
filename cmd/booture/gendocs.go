//go:build gendocs

package main

// Built only with -tags gendocs (the Debian packages' build): a hidden
// command writing man pages and shell completions, so that their generator
// (go-md2man) stays out of the shipped binary and the output out of git.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { extraCommands = append(extraCommands, genDocsCommand) }

func genDocsCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, a []string) error {
			dir := a[0]
			man := filepath.Join(dir, "man")
			comp := filepath.Join(dir, "completions")
			for _, d := range []string{man, comp} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("making %s: %w", d, err)
				}
			}
			root.DisableAutoGenTag = true // reproducible pages: no generation date
			hdr := &doc.GenManHeader{Title: "BOOTURE", Section: "1", Source: "booture " + version, Manual: "booture"}
			if err := doc.GenManTree(root, hdr, man); err != nil {
				return fmt.Errorf("writing man pages: %w", err)
			}
			for name, gen := range map[string]func(string) error{
				"booture.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
				"_booture":     root.GenZshCompletionFile,
				"booture.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
			} {
				if err := gen(filepath.Join(comp, name)); err != nil {
					return fmt.Errorf("writing completion %s: %w", name, err)
				}
			}
			return nil
		},
	}
}
