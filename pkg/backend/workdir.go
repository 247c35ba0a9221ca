package backend

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// checkWorkDir lists what is wrong with a WorkDir at construction: it must
// be absolute and must not be the gateway's own working directory (which
// holds its config, and which a CLI would read as its project).
func checkWorkDir(dir string) []string {
	if strings.ContainsRune(dir, 0) || !filepath.IsAbs(dir) {
		return []string{"workDir: want an absolute path"}
	}
	if wd, err := os.Getwd(); err == nil && within(wd, dir) {
		return []string{fmt.Sprintf("workDir %s: must not hold the gateway's working directory %s", dir, wd)}
	}
	return nil
}

// workDir makes sure the run's working directory is what Run promises —
// an empty directory of this process's user, apart from tgt's config dir —
// creating it when missing, and returns it.
func (c *ClaudeCLI) workDir(tgt Target) (string, error) {
	dir := filepath.Clean(c.opts.WorkDir)
	bad := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("%w: %s: working directory %s: %s", ErrBackend, c.opts.Name, dir, fmt.Sprintf(format, a...))
	}
	if tgt.ConfigDir != "" && (within(dir, tgt.ConfigDir) || within(tgt.ConfigDir, dir)) {
		return bad("overlaps the config dir %s", tgt.ConfigDir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return bad("%v", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return bad("%v", err)
	}
	if !fi.IsDir() {
		return bad("not a directory")
	}
	if !ownedByUs(fi) || fi.Mode().Perm()&0o022 != 0 {
		return bad("must belong to this user and be writable by no one else")
	}
	f, err := os.Open(dir)
	if err != nil {
		return bad("%v", err)
	}
	defer f.Close()
	if names, err := f.Readdirnames(1); len(names) > 0 {
		return bad("not empty (holds %q): the gateway owns it and keeps it empty", names[0])
	} else if err != nil && !errors.Is(err, io.EOF) {
		return bad("%v", err)
	}
	return dir, nil
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
