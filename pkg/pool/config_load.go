package pool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// Environment variables read by the config loader (DESIGN §3, the seeds' names).
const (
	// EnvConfigPath names the config file. Default DefaultConfigPath.
	EnvConfigPath = "AUTH_POOL_CONFIG"
	// EnvWeeklyBudget, when set, overrides every subscription's weeklyBudget
	// (USD > 0, at most MaxWeeklyBudget).
	EnvWeeklyBudget = "WEEKLY_BUDGET"
	// EnvRebalancingEnabled, when set (true/false/1/0), overrides rebalancing.enabled.
	EnvRebalancingEnabled = "AUTH_POOL_REBALANCING_ENABLED"
	// EnvPoolEnabled (true/false/1/0, default true) turns the pool off: every
	// request then goes to the fallback backend. Read by PoolEnabled.
	EnvPoolEnabled = "AUTH_POOL_ENABLED"
)

// DefaultConfigPath is the config file read when AUTH_POOL_CONFIG is unset.
const DefaultConfigPath = "config/auth-pool.json"

// maxConfigBytes bounds the config file: a real one is a few kilobytes.
const maxConfigBytes = 1 << 20

// LoadConfig reads the config file at path, decodes it strictly, applies the
// defaults and the environment overrides (os.Getenv), validates it and expands
// "~/" in every configDir. Any problem yields an error wrapping
// ErrInvalidConfig; problems in the file's content come as one
// *ValidationError that lists all of them with their JSON paths.
func LoadConfig(path string) (*Config, error) {
	return loadConfig(path, os.Getenv)
}

// LoadConfigFromEnv is LoadConfig for the file named by AUTH_POOL_CONFIG
// (default config/auth-pool.json), with every environment variable read
// through getenv.
func LoadConfigFromEnv(getenv func(string) string) (*Config, error) {
	path := getenv(EnvConfigPath)
	if path == "" {
		path = DefaultConfigPath
	}
	return loadConfig(path, getenv)
}

// PoolEnabled reports AUTH_POOL_ENABLED read through getenv: true when unset.
func PoolEnabled(getenv func(string) string) (bool, error) {
	v := getenv(EnvPoolEnabled)
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

func loadConfig(path string, getenv func(string) string) (*Config, error) {
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
	return parseConfig(data, path, getenv)
}

// parseConfig is LoadConfig after the file has been read; source names the
// file in errors.
func parseConfig(data []byte, source string, getenv func(string) string) (*Config, error) {
	chk := checker{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	if !chk.document() {
		return nil, &ValidationError{Source: source, Problems: chk.problems}
	}

	// The checker has found every unknown key and every wrong type with its
	// path; the standard decoder fills the values. It keeps going after those
	// errors, so the rest of the file is still validated.
	var cfg Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil && len(chk.problems) == 0 {
		chk.add("", strings.TrimPrefix(err.Error(), "json: "))
	}

	cfg.applyDefaults()
	ps := append(chk.problems, cfg.applyEnv(getenv)...)
	for _, p := range cfg.problems() {
		if !chk.shadows(p.Path) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		ps = cfg.expandConfigDirs()
	}
	if len(ps) > 0 {
		return nil, &ValidationError{Source: source, Problems: ps}
	}
	return &cfg, nil
}

// applyDefaults replaces the zero values that mean "default" (DESIGN §3).
func (c *Config) applyDefaults() {
	if c.MaxClientsPerSubscription == 0 {
		c.MaxClientsPerSubscription = DefaultMaxClientsPerSubscription
	}
	if c.WeeklyBudgetThreshold == 0 {
		c.WeeklyBudgetThreshold = DefaultWeeklyBudgetThreshold
	}
	if c.Rebalancing.IntervalSeconds == 0 {
		c.Rebalancing.IntervalSeconds = DefaultIntervalSeconds
	}
	if c.Rebalancing.CostGapThreshold == 0 {
		c.Rebalancing.CostGapThreshold = DefaultCostGapThreshold
	}
	if c.Rebalancing.MaxClientsToMovePerCycle == 0 {
		c.Rebalancing.MaxClientsToMovePerCycle = DefaultMaxClientsToMovePerCycle
	}
	if c.Pool == "" {
		c.Pool = DefaultPoolName
	}
	if c.IdleAfterSeconds == 0 {
		c.IdleAfterSeconds = DefaultIdleAfterSeconds
	}
	if c.StaleAfterSeconds == 0 {
		c.StaleAfterSeconds = DefaultStaleAfterSeconds
	}
	if c.ConversationMaxBytes == 0 {
		c.ConversationMaxBytes = DefaultConversationMaxBytes
	}
}

// applyEnv applies WEEKLY_BUDGET and AUTH_POOL_REBALANCING_ENABLED and
// returns their problems, each under the variable's name.
func (c *Config) applyEnv(getenv func(string) string) []Problem {
	var ps problemList
	if v := strings.TrimSpace(getenv(EnvWeeklyBudget)); v != "" {
		b, err := strconv.ParseFloat(v, 64)
		if err != nil || !validBudget(b) {
			ps.add(EnvWeeklyBudget, "%s, got %s", budgetWant, quote(v))
		} else {
			for i := range c.Subscriptions {
				c.Subscriptions[i].WeeklyBudget = b
			}
		}
	}
	if v := getenv(EnvRebalancingEnabled); v != "" {
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

// checker walks the JSON tokens of a config file against the Config type and
// records, with its JSON path, every key the type does not have, every key
// given twice and every value of the wrong JSON type; only a syntax error stops
// it. It exists because encoding/json names neither all unknown keys nor where
// they are.
type checker struct {
	dec      *json.Decoder
	data     []byte
	problems []Problem
	shadowed map[string]bool // paths whose value was refused: later complaints about them are noise
}

// document checks the whole file; false means it is not JSON at all.
func (c *checker) document() bool {
	if len(bytes.Trim(c.data, " \t\r\n")) == 0 {
		c.add("", "the file is empty; want a JSON object")
		return false
	}
	c.dec.UseNumber()
	if !c.value("", reflect.TypeFor[Config]()) {
		return false
	}
	end := c.dec.InputOffset()
	if _, err := c.dec.Token(); !errors.Is(err, io.EOF) {
		rest := c.data[end:]
		line, col := position(c.data, end+int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n"))))
		c.add("", fmt.Sprintf("unexpected data after the JSON object at line %d, column %d", line, col))
	}
	return true
}

// next reads one token; false means a syntax error, recorded at path.
func (c *checker) next(path string) (json.Token, bool) {
	tok, err := c.dec.Token()
	if err == nil {
		return tok, true
	}
	// The decoder's offsets differ between its code paths; the one-pass
	// validator's is always just past the offending byte.
	at, msg := c.dec.InputOffset(), strings.TrimPrefix(err.Error(), "json: ")
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(c.data, new(json.RawMessage)), &se) {
		at, msg = se.Offset-1, strings.TrimPrefix(se.Error(), "json: ")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || msg == "unexpected end of JSON input" {
		at, msg = int64(len(c.data)), "unexpected end of file"
	}
	line, col := position(c.data, at)
	c.add(path, fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, msg))
	return nil, false
}

// value checks one value of type t at path; false means a syntax error.
func (c *checker) value(path string, t reflect.Type) bool {
	tok, ok := c.next(path)
	if !ok {
		return false
	}
	if tok == nil && path != "" {
		return true // null leaves the zero value, which means the default
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var bad error
	switch t.Kind() {
	case reflect.Struct:
		if tok != json.Delim('{') {
			return c.mismatch(path, "an object", tok)
		}
		return c.object(path, t)
	case reflect.Slice:
		if tok != json.Delim('[') {
			return c.mismatch(path, "an array", tok)
		}
		for i := 0; c.dec.More(); i++ {
			if !c.value(fmt.Sprintf("%s[%d]", path, i), t.Elem()) {
				return false
			}
		}
		_, ok := c.next(path) // ']'
		return ok
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return c.mismatch(path, "a string", tok)
		}
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return c.mismatch(path, "true or false", tok)
		}
	case reflect.Int:
		n, ok := tok.(json.Number)
		if !ok {
			return c.mismatch(path, "a whole number", tok)
		}
		if _, bad = strconv.ParseInt(n.String(), 10, strconv.IntSize); errors.Is(bad, strconv.ErrRange) {
			c.refuse(path, "number out of range: "+quote(n.String()))
		} else if bad != nil {
			c.refuse(path, "want a whole number, got "+quote(n.String()))
		}
	case reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return c.mismatch(path, "a number", tok)
		}
		if _, bad = strconv.ParseFloat(n.String(), 64); bad != nil {
			c.refuse(path, "number out of range: "+quote(n.String()))
		}
	default:
		panic("pool: config field of unsupported kind " + t.Kind().String())
	}
	return true
}

// object checks the members of an object whose '{' has been read.
func (c *checker) object(path string, t reflect.Type) bool {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); f.IsExported() && name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	seen := map[string]bool{}
	for c.dec.More() {
		tok, ok := c.next(path)
		if !ok {
			return false
		}
		key, _ := tok.(string) // the decoder returns only string keys here
		kp := joinKey(path, key)
		ft, known := fields[key]
		switch {
		case known && !seen[key]:
			seen[key] = true
			if !c.value(kp, ft) {
				return false
			}
			continue
		case known:
			c.refuse(kp, "duplicate key")
		default:
			msg := "unknown key"
			for name := range fields {
				if strings.EqualFold(name, key) {
					msg += " (did you mean " + name + "?)"
				}
			}
			c.add(kp, msg)
		}
		if tok, ok = c.next(kp); !ok || !c.skip(kp, tok) {
			return false
		}
	}
	_, ok := c.next(path) // '}'
	return ok
}

// mismatch records a value of the wrong JSON type and skips the rest of it.
func (c *checker) mismatch(path, want string, tok json.Token) bool {
	got := "a string"
	switch v := tok.(type) {
	case json.Delim:
		got = map[json.Delim]string{'{': "an object", '[': "an array"}[v]
	case json.Number:
		got = "the number " + v.String()
	case bool:
		got = strconv.FormatBool(v)
	case nil:
		got = "null"
	}
	if path == "" {
		want = "a JSON object" // the file as a whole
	}
	c.refuse(path, "want "+want+", got "+got)
	return c.skip(path, tok)
}

// skip discards the value that tok starts; a loop, not recursion, so that
// deep nesting costs no stack.
func (c *checker) skip(path string, tok json.Token) bool {
	for depth := 0; ; {
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return true
		}
		var ok bool
		if tok, ok = c.next(path); !ok {
			return false
		}
	}
}

func (c *checker) add(path, msg string) {
	(*problemList)(&c.problems).add(path, "%s", msg)
}

// refuse records a problem with the value at path itself.
func (c *checker) refuse(path, msg string) {
	c.add(path, msg)
	if c.shadowed == nil {
		c.shadowed = map[string]bool{}
	}
	c.shadowed[path] = true
}

// shadows reports whether path is, or lies under, a refused value.
func (c *checker) shadows(path string) bool {
	for {
		if c.shadowed[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return c.shadowed[""]
		}
		path = path[:i]
	}
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	before := data[:max(0, min(off, int64(len(data))))]
	line = 1 + bytes.Count(before, []byte("\n"))
	return line, 1 + len(before) - (bytes.LastIndexByte(before, '\n') + 1)
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
