package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// make release, in a clone: the annotated tag v0.2.0 carries the
// changelog's section, the package of the tag is built with version 0.2.0,
// the binary reports v0.2.0, and nothing is pushed.
func TestMakeRelease(t *testing.T) {
	optIn(t, "SINKHOLE_PACKAGE_TEST", "the release test (builds the package in a clone)")
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is not installed")
	}
	clone := filepath.Join(t.TempDir(), "sinkhole")
	must(t, 2*time.Minute, "git", "clone", "-q", "--no-hardlinks", repo, clone)
	git := func(args ...string) string {
		t.Helper()
		return must(t, time.Minute, "git", append([]string{"-C", clone, "-c", "user.name=release test", "-c", "user.email=release@test.invalid"}, args...)...)
	}
	if strings.TrimSpace(git("tag", "-l", "v0.2.0")) != "" {
		git("tag", "-d", "v0.2.0") // the checkout was released already: do it again here
	}
	cmd := exec.Command("make", "-C", clone, "release", "RELEASE=0.2.0")
	cmd.Env = append(os.Environ(), "GIT_COMMITTER_NAME=release test", "GIT_COMMITTER_EMAIL=release@test.invalid",
		"GIT_AUTHOR_NAME=release test", "GIT_AUTHOR_EMAIL=release@test.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	tag := git("cat-file", "-p", "v0.2.0")
	if !strings.Contains(tag, "type commit") || !strings.Contains(tag, "sinkhole 0.2.0") || !strings.Contains(tag, "### Added") {
		t.Errorf("tag v0.2.0:\n%s", tag)
	}
	if git("rev-parse", "v0.2.0^{commit}") != git("rev-parse", "HEAD") {
		t.Error("v0.2.0 is not the released commit")
	}
	if _, err := os.Stat(filepath.Join(clone, "dist", "sinkhole_0.2.0-1_"+strings.TrimSpace(must(t, time.Minute, "go", "env", "GOARCH"))+".deb")); err != nil {
		t.Errorf("the package of the release: %v", err)
	}
	if out := must(t, time.Minute, filepath.Join(clone, "bin", "sinkhole-static"), "version", "--short"); strings.TrimSpace(out) != "v0.2.0" {
		t.Errorf("the released binary says %q", out)
	}
	if out := git("ls-remote", "--tags", "origin", "v0.2.0"); strings.TrimSpace(out) != "" {
		t.Errorf("make release pushed the tag: %s", out)
	}
	// A second release of the same version is refused.
	if out, err := exec.Command("make", "-C", clone, "release", "RELEASE=0.2.0").CombinedOutput(); err == nil {
		t.Errorf("make release twice succeeded:\n%s", out)
	}
}
