package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authpool/authpool/internal/testutil"
)

// Need returns the paths of the named programs (redis-server, redis-cli, …)
// and skips the test when one is missing, unless REDIS_REQUIRED=1 (CI),
// where a missing one fails it.
func Need(t testing.TB, programs ...string) []string {
	t.Helper()
	var paths []string
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			if os.Getenv("REDIS_REQUIRED") == "1" {
				t.Fatalf("%s required (REDIS_REQUIRED=1): %v", p, err)
			}
			t.Skipf("%s not on PATH: %v", p, err)
		}
		paths = append(paths, path)
	}
	return paths
}

// Proc is one redis-server process (a Cluster master, a replica or a
// sentinel) that dies with the test binary.
type Proc struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startProc runs redis-server with args (the port is added) and waits
// until it answers PING.
func startProc(t testing.TB, args ...string) *Proc {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--port", strconv.Itoa(port))
	// A sentinel takes its config file first; the rest follow it.
	cmd := exec.Command("redis-server", args...)
	// Dies with the test binary even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	p := &Proc{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, cmd: cmd, done: make(chan struct{})}
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	c := redis.NewClient(&redis.Options{Addr: p.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server %v did not answer on %s", args, p.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Masters []*Proc
	// Client is a Cluster client for the test's own reads.
	Client *redis.ClusterClient
}

// Addrs lists the masters' addresses, as REDIS_ADDRS takes them.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, m := range c.Masters {
		out = append(out, m.Addr)
	}
	return out
}

// StartCluster starts n masters (at least 3, as redis-cli --cluster create
// requires) on free loopback ports, joins them with redis-cli and waits for
// cluster_state:ok on every node. It skips without redis-server and
// redis-cli unless REDIS_REQUIRED=1.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Need(t, "redis-server", "redis-cli")
	dir := t.TempDir()
	c := &Cluster{}
	for i := 0; i < n; i++ {
		c.Masters = append(c.Masters, startProc(t, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)),
			"--dir", dir, "--loglevel", "warning"))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree before a client trusts its slot map; ok on one
	// node alone still lets another answer CLUSTERDOWN.
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range c.Masters {
		nc := redis.NewClient(&redis.Options{Addr: m.Addr})
		for {
			info, _ := nc.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = nc.Close()
				t.Fatalf("cluster node %s not ok:\n%s", m.Addr, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = nc.Close()
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = c.Client.Close() })
	return c
}

// MasterOf returns the address of the master serving key's slot, read
// from CLUSTER KEYSLOT and CLUSTER SLOTS of the live cluster.
func (c *Cluster) MasterOf(ctx context.Context, key string) (string, error) {
	slot, err := c.Client.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := c.Client.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("redistest: no master serves slot %d", slot)
}

// Sentinel is a master, its replica and three sentinels watching them.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	Master     *Proc
	Replica    *Proc
	Sentinels  []*Proc
}

// SentinelAddrs lists the sentinels, as REDIS_ADDRS takes them.
func (s *Sentinel) SentinelAddrs() []string {
	var out []string
	for _, p := range s.Sentinels {
		out = append(out, p.Addr)
	}
	return out
}

// StartSentinel starts a master, one replica of it (--replicaof) and three
// sentinels with quorum 2, a down-after of 1 s and a failover timeout of
// 5 s, so that a killed master is replaced within a few seconds. It waits
// until the replica is in sync and every sentinel knows the replica and
// the other sentinels, since a failover needs both. It skips without
// redis-server unless REDIS_REQUIRED=1.
func StartSentinel(t testing.TB, masterName string) *Sentinel {
	t.Helper()
	Need(t, "redis-server")
	dir := t.TempDir()
	base := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"}
	s := &Sentinel{MasterName: masterName}
	s.Master = startProc(t, append(base, "--dir", mkdir(t, dir, "master"))...)
	s.Replica = startProc(t, append(base, "--dir", mkdir(t, dir, "replica"),
		"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))...)
	testutil.Eventually(t, 10*time.Second, "the replica to sync", func() bool {
		c := redis.NewClient(&redis.Options{Addr: s.Replica.Addr})
		defer c.Close()
		info, _ := c.Info(context.Background(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	for i := 0; i < 3; i++ {
		// A sentinel rewrites its config file (known replicas and peers),
		// so each gets a writable one of its own.
		conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		body := fmt.Sprintf("bind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", masterName, s.Master.Port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Sentinels = append(s.Sentinels, startProc(t, conf, "--sentinel", "--loglevel", "warning"))
	}
	testutil.Eventually(t, 20*time.Second, "the sentinels to see the replica and each other", func() bool {
		for _, p := range s.Sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: p.Addr})
			m, err := c.Master(context.Background(), masterName).Result()
			_ = c.Close()
			if err != nil || m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return false
			}
		}
		return true
	})
	return s
}

// CurrentMaster asks a live sentinel for the master's address.
func (s *Sentinel) CurrentMaster(ctx context.Context) (string, error) {
	var last error = errors.New("redistest: no sentinel answered")
	for _, p := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: p.Addr})
		addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		_ = c.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		if err != nil {
			last = err
		}
	}
	return "", last
}

func mkdir(t testing.TB, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}
