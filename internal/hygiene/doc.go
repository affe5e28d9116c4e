// Package hygiene holds tests about the code base itself rather than one
// feature: every package documents itself, the CLI stays free of the
// network stack, and the code is formatted.
package hygiene
