// Package setting parses the values of plugin settings shared by the
// first-party plugins (sizes, durations, URLs), with errors that name the
// setting.
package setting

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bytes parses setting key of settings as a size: "100MiB", "12G", "512k",
// "1048576", or "unlimited"/"-1" (returned as -1). Missing means def.
func Bytes(settings map[string]string, key string, def int64) (int64, error) {
	s := strings.TrimSpace(settings[key])
	if s == "" {
		return def, nil
	}
	switch strings.ToLower(s) {
	case "-1", "unlimited", "none":
		return -1, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
	}
	num, mult := strings.ToLower(s), 1.0
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f*mult, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("setting %s: %q is not a size (e.g. 100MiB, 12G, unlimited)", key, s)
	}
	return int64(f * mult), nil
}

// Duration parses setting key as a Go duration ("90s", "1h"). Missing
// means def.
func Duration(settings map[string]string, key string, def time.Duration) (time.Duration, error) {
	s := strings.TrimSpace(settings[key])
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("setting %s: %q is not a duration (e.g. 90s, 1h)", key, s)
	}
	return d, nil
}

// URL parses setting key as an absolute http(s) URL; missing is "".
func URL(settings map[string]string, key string) (string, error) {
	s := strings.TrimSpace(settings[key])
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("setting %s: %q is not an http(s) URL", key, s)
	}
	return strings.TrimRight(s, "/"), nil
}

// Join appends path to a base URL without doubling the slash.
func Join(base, path string) string {
	return strings.TrimRight(base, "/") + path
}
