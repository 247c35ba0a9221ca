// Package redistest runs tests against miniredis and, when redis-server is on
// PATH, against a real redis-server started on a free port. With
// REDIS_REQUIRED=1 (CI) a missing redis-server fails the test instead of
// skipping the real-Redis half.
//
// Every Target carries a pool name of its own (Target.Pool). Tests that keep
// their keys under it share the real server with each other and run in
// parallel (Shared, EachParallel); the others get a flushed server (Real,
// Each) and run alone.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Target is one Redis a test runs against.
type Target struct {
	// Name is "miniredis" or "redis-server".
	Name string
	// Client talks to the target.
	Client *redis.Client
	// Mini is set for miniredis targets (time travel with SetTime/FastForward).
	Mini *miniredis.Miniredis
	// Addr is host:port.
	Addr string
	// Pool is a pool name no other test of the process uses (PoolName), so
	// the keys authpool:{Pool}:… and their Pub/Sub channels are the test's
	// own.
	Pool string
}

// Real reports whether this target is a real redis-server.
func (t *Target) Real() bool { return t.Mini == nil }

// Each runs fn as a subtest on miniredis and on a fresh database of a real
// redis-server.
func Each(t *testing.T, fn func(t *testing.T, tg *Target)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) { fn(t, Mini(t)) })
	t.Run("redis-server", func(t *testing.T) { fn(t, Real(t)) })
}

// EachParallel marks t parallel and runs fn as parallel subtests on
// miniredis and on the shared redis-server (Shared). fn must keep to
// tg.Pool's keys.
func EachParallel(t *testing.T, fn func(t *testing.T, tg *Target)) {
	t.Helper()
	t.Parallel()
	t.Run("miniredis", func(t *testing.T) { t.Parallel(); fn(t, Mini(t)) })
	t.Run("redis-server", func(t *testing.T) { t.Parallel(); fn(t, Shared(t)) })
}

var poolSeq atomic.Int64

// PoolName returns a pool name made of the test's name and a number no
// other call of this process returns: a valid pool name (at most 64 of
// [A-Za-z0-9_-]) that names the test in redis-cli's output.
func PoolName(t testing.TB) string {
	name := []byte(t.Name())
	for i, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			name[i] = '-'
		}
	}
	if len(name) > 48 {
		name = name[len(name)-48:] // the subtest's end of the name tells tests apart
	}
	return fmt.Sprintf("%s-%d", name, poolSeq.Add(1))
}

// Mini starts a miniredis for the test.
func Mini(t testing.TB) *Target {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return &Target{Name: "miniredis", Client: c, Mini: m, Addr: m.Addr(), Pool: PoolName(t)}
}

// Real starts (once per test binary) a redis-server on a free port and returns
// a client on a flushed database. Tests using Real must not run in parallel
// (t.Parallel), since the flush takes every other test's keys; tests that
// keep to Target.Pool use Shared instead. It skips when redis-server is
// missing, unless REDIS_REQUIRED=1.
func Real(t testing.TB) *Target {
	t.Helper()
	tg := Shared(t)
	if err := tg.Client.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("flushall: %v", err)
	}
	return tg
}

// Shared is the redis-server of Real without the flush: tests that keep to
// Target.Pool's keys run on it in parallel, each in a key space of its own.
// Parallel tests run after the sequential ones of their package, so a
// flush by Real never reaches them.
func Shared(t testing.TB) *Target {
	t.Helper()
	addr, err := sharedServer()
	if err != nil {
		if os.Getenv("REDIS_REQUIRED") == "1" {
			t.Fatalf("redis-server required (REDIS_REQUIRED=1): %v", err)
		}
		t.Skipf("real Redis unavailable: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	t.Cleanup(func() { _ = c.Close() })
	return &Target{Name: "redis-server", Client: c, Addr: addr, Pool: PoolName(t)}
}

var (
	once       sync.Once
	sharedAddr string
	sharedErr  error
)

func sharedServer() (string, error) {
	once.Do(func() {
		srv, err := StartServer()
		if err != nil {
			sharedErr = err
			return
		}
		sharedAddr = srv.Addr
		// The process ends with the test binary: redis-server is started with
		// a pipe to us and exits when the parent dies (see StartServer).
	})
	return sharedAddr, sharedErr
}

// Server is a redis-server child process.
type Server struct {
	Addr string
	Port int
	Dir  string
	cmd  *exec.Cmd
}

// StartServer starts a redis-server on a free loopback port with no
// persistence. Callers that want their own server (restart tests) use it
// directly and Stop it.
func StartServer() (*Server, error) {
	return StartServerOnPort(0)
}

// StartServerOnPort starts redis-server on port (0: a free one).
func StartServerOnPort(port int) (*Server, error) {
	return StartServerWith(ServerOptions{Port: port})
}

// ServerOptions shape a redis-server for persistence tests.
type ServerOptions struct {
	// Port to listen on; 0 a free one.
	Port int
	// Dir is the data dir (kept on Stop); "" a temporary one, removed.
	Dir string
	// Save is --save ("" no snapshots); DBFilename is --dbfilename
	// (default dump.rdb); AppendOnly turns the AOF on.
	Save, DBFilename string
	AppendOnly       bool
}

// StartServerWith starts redis-server as o says.
func StartServerWith(o ServerOptions) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redistest: redis-server not on PATH: %w", err)
	}
	port := o.Port
	if port == 0 {
		port, err = FreePort()
		if err != nil {
			return nil, err
		}
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "redistest-"); err != nil {
			return nil, err
		}
	}
	aof := "no"
	if o.AppendOnly {
		aof = "yes"
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", o.Save, "--appendonly", aof, "--dir", dir,
		"--protected-mode", "yes", "--loglevel", "warning"}
	if o.DBFilename != "" {
		args = append(args, "--dbfilename", o.DBFilename)
	}
	cmd := exec.Command(bin, args...)
	// The server dies with the test binary even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start redis-server: %w", err)
	}
	go func() { // drain
		s := bufio.NewScanner(stderr)
		for s.Scan() {
		}
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	srv := &Server{Addr: addr, Port: port, Dir: dir, cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		err := c.Ping(context.Background()).Err()
		_ = c.Close()
		if err == nil {
			return srv, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Stop()
	return nil, fmt.Errorf("redistest: redis-server on %s did not answer", addr)
}

// Stop kills the server and removes its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	}
	if strings.HasPrefix(filepath.Base(s.Dir), "redistest-") {
		_ = os.RemoveAll(s.Dir)
	}
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
