package tests

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authpool/authpool/internal/redistest"
	"github.com/authpool/authpool/internal/testutil"
)

// TestBackupAndRestore (issue 12, "must show" 3) follows docs/redis.md's
// backup and restore: BGSAVE, copy dump.rdb, restart redis-server from that
// copy (AOF off for the load), and the pool's usage and sessions are back;
// the running gateway carries on with the restored session.
func TestBackupAndRestore(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	dataDir, backupDir := t.TempDir(), t.TempDir()
	srv, err := redistest.StartServerWith(redistest.ServerOptions{Dir: dataDir, AppendOnly: true, Save: "3600 1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := startCluster(t, clusterOpts{replicas: 1, redisAddr: srv.Addr})
	client := c.replicas[0].client(clientKey)
	for _, sid := range []string{"kept-1", "kept-2"} {
		if _, _, err := ask(t, client, sid, "before the backup"); err != nil {
			t.Fatal(err)
		}
	}
	c.settled()
	usage := c.rdb.XLen(ctx, c.keys.Usage()).Val()
	bound := c.session("kept-1")["sub"]
	if usage != 2 || bound == "" {
		t.Fatalf("before the backup: %d usage entries, kept-1 on %q", usage, bound)
	}

	// Backup: BGSAVE, wait until it is done, copy dump.rdb.
	last := c.rdb.LastSave(ctx).Val()
	if err := c.rdb.BgSave(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "BGSAVE done", func() bool {
		info := c.rdb.Info(ctx, "persistence").Val()
		return strings.Contains(info, "rdb_bgsave_in_progress:0") && c.rdb.LastSave(ctx).Val() >= last
	})
	if info := c.rdb.Info(ctx, "persistence").Val(); !strings.Contains(info, "rdb_last_bgsave_status:ok") {
		t.Fatalf("BGSAVE failed:\n%s", info)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(backupDir, "authpool.rdb")
	if err := os.WriteFile(backup, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// A turn after the backup is lost by the restore (as documented).
	if _, _, err := ask(t, client, "after-backup", "lost"); err != nil {
		t.Fatal(err)
	}
	c.settled() // its settle lands before the restore, not in the restored Redis on a retry

	// Restore into a new data dir on the same port: AOF off for the load,
	// then on again from the loaded data.
	srv.Stop()
	restoreDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(restoreDir, "dump.rdb"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv2, err := redistest.StartServerWith(redistest.ServerOptions{Port: srv.Port, Dir: restoreDir, DBFilename: "dump.rdb"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Stop)
	testutil.Eventually(t, 10*time.Second, "the restored redis-server",
		func() bool { return c.rdb.Ping(ctx).Err() == nil })
	if err := c.rdb.ConfigSet(ctx, "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}

	if got := c.rdb.XLen(ctx, c.keys.Usage()).Val(); got != usage {
		t.Errorf("usage entries after the restore = %d, want %d", got, usage)
	}
	if got := c.session("kept-1")["sub"]; got != bound {
		t.Errorf("session kept-1 after the restore on %q, want %q", got, bound)
	}
	if got := c.session("after-backup"); len(got) != 0 {
		t.Errorf("a session made after the backup survived the restore: %v", got)
	}
	// The gateway carries on (its healer reloads the scripts); the restored
	// session resumes where it was.
	testutil.Eventually(t, 10*time.Second, "the gateway ready again", func() bool {
		resp, err := http.Get(c.replicas[0].url + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if _, hr, err := ask(t, client, "kept-1", "after the restore"); err != nil || hr.Header.Get("X-AuthPool-Allocation") != "subscription" {
		t.Fatalf("restored session: %v", err)
	}
	if got := c.session("kept-1")["sub"]; got != bound {
		t.Errorf("restored session moved to %q, want %q", got, bound)
	}
	c.settled()
	if got := c.rdb.XLen(ctx, c.keys.Usage()).Val(); got != usage+1 {
		t.Errorf("usage entries = %d, want %d", got, usage+1)
	}
}
