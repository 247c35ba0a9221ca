// Package ids holds the shape of every kind of id authpool accepts, one
// pattern each, so that the config validator, the HTTP edge, the key builders
// and the backends agree on what an id is. Each pattern keeps the limit its
// id is documented with. Ids that become part of a Redis key allow no ':',
// '{' or '}', so they cannot reach into another key or hash slot.
//
// The package imports nothing of authpool: every package may use it.
package ids

import (
	"os"
	"regexp"
	"strconv"
)

var (
	// Name is the shape of subscription ids and pool names, as the config
	// file gives them (DESIGN §3): ^[A-Za-z0-9_-]{1,64}$. Both become part of
	// Redis keys; a bad one is refused, never rewritten.
	Name = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// Key is the shape of any id that becomes part of a Redis key:
	// session ids (the README's [A-Za-z0-9_-]{1,128}), settlement and
	// request ids, owners (API key ids), rate-limit subjects. Every Name is
	// a Key.
	Key = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	// CLISession is the shape of a Claude CLI session id passed to --resume
	// (a UUID in practice). It never starts with '-', so argv cannot read
	// it as an option.
	CLISession = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,127}$`)
	// Replica is the shape of a process's name: a rebalancer's lock holder,
	// a notification consumer and its group. Host and pod names fit. It is
	// stored in Redis values and logs, never in key names.
	Replica = regexp.MustCompile(`^[` + replicaChars + `]{1,128}$`)
	// NotReplica matches the runs of characters a Replica may not hold, to
	// make one out of a host name.
	NotReplica = regexp.MustCompile(`[^` + replicaChars + `]+`)
	// Backend is the shape of a backend's name in backends.json.
	Backend = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

const replicaChars = `A-Za-z0-9_.:@-`

// ValidName reports whether s may be a subscription id or pool name.
func ValidName(s string) bool { return Name.MatchString(s) }

// ValidKey reports whether s may be part of a Redis key.
func ValidKey(s string) bool { return Key.MatchString(s) }

// ValidSession reports whether s may be a session id.
func ValidSession(s string) bool { return Key.MatchString(s) }

// ProcessName is a Replica naming this process: prefix, the host name made
// to fit (noHost when there is none) and the pid; of a name too long, the
// end (the pid) is kept.
func ProcessName(prefix, noHost string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = noHost
	}
	id := NotReplica.ReplaceAllString(prefix+host, "-") + "-" + strconv.Itoa(os.Getpid())
	if len(id) > 128 {
		id = id[len(id)-128:]
	}
	return id
}
