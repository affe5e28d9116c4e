//go:build !unix

package members

// lockFile does nothing where flock is missing: the daemon runs on Linux;
// other systems only use the package to render configurations.
func lockFile(string) (func() error, error) { return func() error { return nil }, nil }
