package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/authpool/authpool/pkg/pool"
)

// ClientKey is one named client key of API_KEYS_FILE: a JSON list of
// {"name": "alice", "key": "…"} or {"name": "alice", "sha256": "<hex of the
// key>"}, each with optional limits. The key itself is only ever held as its
// SHA-256; its name is what logs, Redis and the usage stream show.
type ClientKey struct {
	// Name identifies the key in logs, usage and Redis keys:
	// ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$, unique in the file.
	Name string `json:"name"`
	// Key is the secret (at least MinClientKeyLength characters, no
	// spaces); or SHA256 is the hex SHA-256 of it. Exactly one of them.
	Key    string `json:"key,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// RateLimitPerMinute replaces RATE_LIMIT_PER_MINUTE for this key; 0
	// means the default.
	RateLimitPerMinute int `json:"rateLimitPerMinute,omitempty"`
	// WeeklyBudget in USD caps the key's rolling 7-day cost; over it
	// requests get 429 quota_exceeded until the oldest spend leaves the
	// window. 0 means none.
	WeeklyBudget float64 `json:"weeklyBudget,omitempty"`
	// Models, when set, is the allow-list of request models (as the client
	// names them); another model gets 403 permission_error.
	Models []string `json:"models,omitempty"`
}

// Bounds of a keys file.
const (
	// MinClientKeyLength is the shortest accepted key: a shorter one can
	// be guessed.
	MinClientKeyLength = 16
	maxKeysFileBytes   = 1 << 20
	maxRatePerMinute   = 1_000_000
)

// LoadKeysFile reads and validates API_KEYS_FILE. Every problem is listed
// with its JSON path in one *pool.ValidationError; no message ever quotes
// a key.
func LoadKeysFile(path string) ([]ClientKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", pool.ErrInvalidConfig, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", pool.ErrInvalidConfig, path, err)
	}
	keys, ps := parseKeysFile(data)
	if len(ps) > 0 {
		return nil, &pool.ValidationError{Source: path, Problems: ps}
	}
	return keys, nil
}

func parseKeysFile(data []byte) ([]ClientKey, []pool.Problem) {
	if len(data) > maxKeysFileBytes {
		return nil, []pool.Problem{{Message: fmt.Sprintf("file is larger than %d bytes", maxKeysFileBytes)}}
	}
	var keys []ClientKey
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&keys); err != nil {
		// The decoder's own message may quote the text around a syntax
		// error, which can be a key: say where, not what.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		msg := "want a JSON list of {name, key | sha256, rateLimitPerMinute?, weeklyBudget?, models?}"
		switch {
		case errors.As(err, &se):
			msg = fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			return nil, []pool.Problem{{Path: te.Field, Message: "wrong type: want " + te.Type.String()}}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			msg = strings.TrimPrefix(err.Error(), "json: ")
		}
		return nil, []pool.Problem{{Message: msg}}
	}
	var ps []pool.Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, pool.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if len(keys) == 0 {
		add("", "at least one key is required")
	}
	names, digests := map[string]int{}, map[[sha256.Size]byte]int{}
	for i := range keys {
		k := &keys[i]
		p := fmt.Sprintf("[%d]", i)
		if !pool.ValidKeyName(k.Name) {
			add(p+".name", "want 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit")
		} else if j, dup := names[k.Name]; dup {
			add(p+".name", "duplicate of [%d].name", j)
		} else {
			names[k.Name] = i
		}
		var d [sha256.Size]byte
		switch {
		case (k.Key == "") == (k.SHA256 == ""):
			add(p, "want exactly one of key and sha256")
		case k.Key != "":
			if len(k.Key) < MinClientKeyLength || len(k.Key) > 512 || strings.ContainsAny(k.Key, " \t\r\n,") {
				add(p+".key", "want %d to 512 characters without spaces or commas", MinClientKeyLength)
			}
			d = sha256.Sum256([]byte(k.Key))
		default:
			b, err := hex.DecodeString(k.SHA256)
			if err != nil || len(b) != sha256.Size {
				add(p+".sha256", "want 64 hex digits (the SHA-256 of the key)")
			}
			copy(d[:], b)
		}
		if j, dup := digests[d]; dup && d != ([sha256.Size]byte{}) {
			add(p, "the same key as [%d]", j)
		} else {
			digests[d] = i
		}
		if k.RateLimitPerMinute < 0 || k.RateLimitPerMinute > maxRatePerMinute {
			add(p+".rateLimitPerMinute", "want 0 (the default) to %d", maxRatePerMinute)
		}
		if !(k.WeeklyBudget >= 0 && k.WeeklyBudget <= pool.MaxWeeklyBudget) {
			add(p+".weeklyBudget", "want 0 (none) to %g USD", float64(pool.MaxWeeklyBudget))
		}
		seen := map[string]bool{}
		for j, m := range k.Models {
			mp := fmt.Sprintf("%s.models[%d]", p, j)
			switch {
			case m == "" || len(m) > 128 || strings.ContainsAny(m, " \t\r\n"):
				add(mp, "want a model name of 1 to 128 characters without spaces")
			case seen[m]:
				add(mp, "duplicate model %q", m)
			}
			seen[m] = true
		}
	}
	return keys, ps
}
