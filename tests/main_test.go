// Package tests holds the end-to-end tests of authpool: real processes —
// redis-server, several cmd/api replicas, the fake claude CLI
// (tests/fakeclaude) and a local Messages API server for the fallback —
// driven through the official openai-go client.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/authpool/authpool/internal/redistest"
)

// Built once per run by TestMain.
var (
	apiBin    string // cmd/api
	fakeBin   string // tests/fakeclaude, used as CLAUDE_BIN
	repoRoot  string
	redisAddr string
	skipAll   string // why every test skips (no redis-server)
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "authpool-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	apiBin, fakeBin = filepath.Join(dir, "api"), filepath.Join(dir, "claude")
	for out, pkg := range map[string]string{apiBin: "./cmd/api", fakeBin: "./tests/fakeclaude"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	srv, err := redistest.StartServer()
	if err != nil {
		if os.Getenv("REDIS_REQUIRED") == "1" {
			fmt.Fprintln(os.Stderr, "redis-server required (REDIS_REQUIRED=1):", err)
			return 1
		}
		skipAll = err.Error()
	} else {
		defer srv.Stop()
		redisAddr = srv.Addr
	}
	return m.Run()
}

func needRedis(t *testing.T) {
	t.Helper()
	if skipAll != "" {
		t.Skip("no redis-server:", skipAll)
	}
}
