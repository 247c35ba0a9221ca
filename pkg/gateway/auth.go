package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/authpool/authpool/internal/ids"
	"github.com/authpool/authpool/pkg/pool"
)

// Context keys set by the middleware.
const (
	ctxRequestID = "authpool.requestID"
	ctxSubject   = "authpool.subject"
	ctxError     = "authpool.error"
	ctxAlloc     = "authpool.allocation"
	ctxSub       = "authpool.subscription"
	ctxOwner     = "authpool.owner"
	ctxClientKey = "authpool.clientKey" // ClientKey without its secret
)

// HeaderRequestID is accepted from clients (validated) or generated, and
// echoed on every answer.
const HeaderRequestID = "X-Request-ID"

// newRequestID returns a random UUID (version 4).
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// requestID accepts a valid X-Request-ID or generates one, and echoes it. It
// correlates logs and traces only: settlement ids are the server's (one per
// turn), since a client-chosen one let a client repeat it and have several
// turns counted once.
func requestID(c *gin.Context) {
	id := c.GetHeader(HeaderRequestID)
	if id == "" {
		id = newRequestID()
	}
	if !ids.ValidKey(id) {
		id = newRequestID()
		c.Header(HeaderRequestID, id)
		c.Set(ctxRequestID, id)
		writeError(c, badField("X-Request-ID", "must match %s", ids.Key))
		return
	}
	c.Header(HeaderRequestID, id)
	c.Set(ctxRequestID, id)
	c.Next()
}

// keyring holds the SHA-256 of each client key: comparisons are constant-time
// over equal-length digests, and the keys themselves are not kept. Named
// keys (API_KEYS_FILE) carry their limits.
type keyring struct {
	entries []keyEntry
}

// keyEntry is one accepted key: its digest, and for a named key its name
// and limits ("" and zeros for API_KEYS).
type keyEntry struct {
	digest [sha256.Size]byte
	ClientKey
}

func newKeyring(keys []string) *keyring {
	k := &keyring{}
	for _, key := range keys {
		if key = strings.TrimSpace(key); key != "" {
			k.entries = append(k.entries, keyEntry{digest: sha256.Sum256([]byte(key))})
		}
	}
	return k
}

// with returns a keyring of k's keys plus the named ones (validated by
// LoadKeysFile); the secrets are dropped once digested.
func (k *keyring) with(named []ClientKey) *keyring {
	out := &keyring{entries: append([]keyEntry(nil), k.entries...)}
	for _, c := range named {
		e := keyEntry{ClientKey: c}
		if c.Key != "" {
			e.digest = sha256.Sum256([]byte(c.Key))
		} else {
			b, _ := hex.DecodeString(c.SHA256)
			copy(e.digest[:], b)
		}
		e.Key, e.SHA256 = "", ""
		out.entries = append(out.entries, e)
	}
	return out
}

// enabled reports whether any key is configured.
func (k *keyring) enabled() bool { return len(k.entries) > 0 }

// valid reports whether presented is one of the keys.
func (k *keyring) valid(presented string) bool {
	_, ok := k.match(presented)
	return ok
}

// match compares presented against every key, without stopping early, and
// returns the matching entry.
func (k *keyring) match(presented string) (keyEntry, bool) {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range k.entries {
		eq := subtle.ConstantTimeCompare(d[:], k.entries[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return keyEntry{}, false
	}
	return k.entries[found], true
}

// presentedKey reads a client key from Authorization: Bearer or X-API-Key.
func presentedKey(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// subjectOf names a rate-limit subject without the secret: a hex SHA-256
// prefix of the key, or of the client IP when keys are off.
func subjectOf(prefix, v string) string {
	d := sha256.Sum256([]byte(v))
	return prefix + hex.EncodeToString(d[:12])
}

// keyID names the API key that owns a session: a short SHA-256 prefix, so
// the session hash in Redis never holds the key itself.
func keyID(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:8])
}

// apiAuth checks the client key when keys are configured and records the
// rate-limit subject and the sessions' owner (pool.NoOwner without keys, so
// that behaviour without keys is unchanged).
func (s *Server) apiAuth(c *gin.Context) {
	keys := s.clientKeys()
	if !keys.enabled() {
		c.Set(ctxSubject, subjectOf("ip-", c.ClientIP()))
		c.Set(ctxOwner, pool.NoOwner)
		c.Next()
		return
	}
	key := presentedKey(c.Request)
	e, ok := keys.match(key)
	if key == "" || !ok {
		writeError(c, ErrUnauthorized)
		return
	}
	c.Set(ctxSubject, subjectOf("key-", key))
	c.Set(ctxOwner, keyID(key))
	c.Set(ctxClientKey, e.ClientKey)
	c.Next()
}

// ownerOf is the owner of the sessions the request may use.
func ownerOf(c *gin.Context) string {
	if o := c.GetString(ctxOwner); o != "" {
		return o
	}
	return pool.NoOwner
}

// adminAuth guards /debug/* and /admin/v1: the admin token when one is configured, else
// loopback clients only.
func (s *Server) adminAuth(c *gin.Context) {
	if s.admin == nil {
		if !loopback(c.ClientIP()) {
			writeError(c, ErrForbidden)
			return
		}
		c.Next()
		return
	}
	tok := presentedKey(c.Request)
	if tok == "" {
		tok = strings.TrimSpace(c.GetHeader("X-Admin-Token"))
	}
	if _, ok := s.admin.match(tok); tok == "" || !ok {
		writeError(c, ErrForbidden)
		return
	}
	c.Next()
}

func loopback(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && p.IsLoopback()
}

// limitBody refuses a body over the limit: at once when Content-Length says
// so, else when reading passes the limit (decodeChat reports it).
func (s *Server) limitBody(c *gin.Context) {
	markTiming(c, msIn)
	if c.Request.ContentLength > s.maxBody {
		writeError(c, ErrBodyTooLarge)
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody)
	c.Next()
}
