package pool

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Names of the environment variables behind Overrides and PoolEnabled (DESIGN
// §3, the seeds' names). The binaries read them; this package only names them,
// so that a problem with a value is reported under its variable.
const (
	// EnvConfigPath names the config file. Default DefaultConfigPath.
	EnvConfigPath = "AUTH_POOL_CONFIG"
	// EnvWeeklyBudget, when set, overrides every subscription's weeklyBudget
	// (USD > 0, at most MaxWeeklyBudget).
	EnvWeeklyBudget = "WEEKLY_BUDGET"
	// EnvRebalancingEnabled, when set (true/false/1/0), overrides rebalancing.enabled.
	EnvRebalancingEnabled = "AUTH_POOL_REBALANCING_ENABLED"
	// EnvPoolEnabled (true/false/1/0, default true) turns the pool off: every
	// request then goes to the fallback backend. Parsed by PoolEnabled.
	EnvPoolEnabled = "AUTH_POOL_ENABLED"
)

// DefaultConfigPath is the config file read when AUTH_POOL_CONFIG is unset.
const DefaultConfigPath = "config/auth-pool.json"

// maxConfigBytes bounds the config file: a real one is a few kilobytes.
const maxConfigBytes = 1 << 20

// Overrides are the environment's overrides of the config file, as the binary
// read them ("" = not set). They stay text until LoadConfig parses them with
// the file, so that one start-up error lists a bad override together with
// the file's own problems.
type Overrides struct {
	// WeeklyBudget (WEEKLY_BUDGET) replaces every subscription's weeklyBudget.
	WeeklyBudget string
	// RebalancingEnabled (AUTH_POOL_REBALANCING_ENABLED: true, false, 1 or 0)
	// replaces rebalancing.enabled.
	RebalancingEnabled string
}

// LoadConfig reads the config file at path, decodes it strictly, applies the
// defaults and the overrides, validates it and expands "~/" in every
// configDir. Any problem yields an error wrapping ErrInvalidConfig; problems
// in the file's content or the overrides come as one *ValidationError that
// lists all of them with their JSON paths (or variable names).
func LoadConfig(path string, ov Overrides) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrInvalidConfig, path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, &ValidationError{Source: path, Problems: []Problem{{
			Message: fmt.Sprintf("file is larger than %d bytes", maxConfigBytes)}}}
	}
	cfg, err := parseConfig(data, path, ov)
	if err != nil {
		return nil, err
	}
	// The version names what was read, overrides included: two replicas
	// that read the same file with the same environment agree on it.
	sum := sha256.New()
	sum.Write(data)
	fmt.Fprintf(sum, "\x00%s\x00%s", ov.WeeklyBudget, ov.RebalancingEnabled)
	cfg.version = Version{Hash: hex.EncodeToString(sum.Sum(nil)), LoadedAt: time.Now()}
	return cfg, nil
}

// PoolEnabled parses a value of AUTH_POOL_ENABLED: true when "".
func PoolEnabled(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	b, ok := parseSwitch(v)
	if !ok {
		return false, &ValidationError{Problems: []Problem{{Path: EnvPoolEnabled,
			Message: "want true, false, 1 or 0, got " + quote(v)}}}
	}
	return b, nil
}

// parseConfig is LoadConfig after the file has been read; source names the
// file in errors.
func parseConfig(data []byte, source string, ov Overrides) (*Config, error) {
	tree, ps, ok := readTree(data)
	if !ok {
		return nil, &ValidationError{Source: source, Problems: ps}
	}
	// The schema finds every unknown key and every value of the wrong type
	// or out of range, with its path; the standard decoder fills the
	// values. It keeps going after those errors, so the rest of the file is
	// still validated.
	refused := map[string]bool{}
	for _, p := range ps { // duplicate keys
		refused[p.Path] = true
	}
	found := schemaProblems(tree)
	for _, f := range found {
		if f.refuse {
			refused[f.Path] = true
		}
	}
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil && len(found) == 0 && len(ps) == 0 {
		ps = append(ps, Problem{Message: strings.TrimPrefix(err.Error(), "json: ")})
	}

	cfg.applyDefaults()
	envProblems := cfg.applyOverrides(ov)
	var codeProblems []Problem
	checked := map[string]bool{}
	for _, p := range cfg.problems() {
		if !shadowed(refused, p.Path) {
			codeProblems = append(codeProblems, p)
			checked[p.Path] = true
		}
	}
	// A value the code also checks is described by the code's message; one
	// an override replaced is no longer the file's problem.
	budgetOverridden := strings.TrimSpace(ov.WeeklyBudget) != ""
	for _, f := range found {
		if !f.refuse && (checked[f.Path] || budgetOverridden && isBudgetPath(f.Path)) {
			continue
		}
		ps = append(ps, f.Problem)
	}
	ps = append(append(ps, envProblems...), codeProblems...)
	if len(ps) == 0 {
		ps = cfg.expandConfigDirs()
	}
	if len(ps) > 0 {
		return nil, &ValidationError{Source: source, Problems: ps}
	}
	return &cfg, nil
}

// applyOverrides applies WEEKLY_BUDGET and AUTH_POOL_REBALANCING_ENABLED and
// returns their problems, each under the variable's name.
func (c *Config) applyOverrides(ov Overrides) []Problem {
	var ps problemList
	if v := strings.TrimSpace(ov.WeeklyBudget); v != "" {
		b, err := strconv.ParseFloat(v, 64)
		if err != nil || !validBudget(b) {
			ps.add(EnvWeeklyBudget, "%s, got %s", budgetWant, quote(v))
		} else {
			for i := range c.Subscriptions {
				c.Subscriptions[i].WeeklyBudget = b
			}
		}
	}
	if v := ov.RebalancingEnabled; v != "" {
		if b, ok := parseSwitch(v); ok {
			c.Rebalancing.Enabled = &b
		} else {
			ps.add(EnvRebalancingEnabled, "want true, false, 1 or 0, got %s", quote(v))
		}
	}
	return ps
}

// expandConfigDirs turns "~/x" into $HOME/x and cleans every configDir. It
// runs after validation, so every dir is absolute or "~/…" without "..".
func (c *Config) expandConfigDirs() []Problem {
	var ps problemList
	for i := range c.Subscriptions {
		dir := c.Subscriptions[i].ConfigDir
		if rest, ok := strings.CutPrefix(dir, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil || !filepath.IsAbs(home) {
				ps.add(fmt.Sprintf("subscriptions[%d].configDir", i),
					"cannot expand ~/: no absolute home directory ($HOME)")
				continue
			}
			dir = filepath.Join(home, rest)
		}
		c.Subscriptions[i].ConfigDir = filepath.Clean(dir)
	}
	return ps
}

// parseSwitch accepts the boolean spellings of the seeds' variables.
func parseSwitch(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// joinKey appends an object key to a JSON path: a.b, or a["odd key"] for a
// key that is not a plain name.
func joinKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		plain = plain && (r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}
	switch {
	case !plain:
		return path + "[" + quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}
