package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sinkhole-dns/sinkhole/internal/dnstest"
)

// runVariants are the ways the test tries to run a container, from plain
// to the settings sandboxes need (crun refuses hybrid cgroups; a runtime
// without CAP_SYS_RESOURCE cannot set rlimits above podman's defaults).
var runVariants = [][]string{
	nil,
	{"--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"},
}

func TestContainerImage(t *testing.T) {
	optIn(t, "SINKHOLE_IMAGE_TEST", "the image test (podman build and run)")
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed (.ci/run installs it)")
	}
	lockMachine(t, "sinkhole-image-test")
	tag := fmt.Sprintf("test-%d", os.Getpid())
	image := "localhost/sinkhole-test:" + tag
	// The storage podman picks, or vfs where the machine has no overlay.
	var storage []string
	build := func() (string, error) {
		return run(t, 10*time.Minute, "make", "-C", repo, "image", "IMAGE=localhost/sinkhole-test", "IMAGE_TAG="+tag, "PODMAN_FLAGS="+strings.Join(storage, " "))
	}
	if out, err := build(); err != nil {
		t.Logf("make image with podman's default storage failed (%v), trying vfs:\n%s", err, out)
		storage = []string{"--storage-driver", "vfs"}
		if out, err := build(); err != nil {
			t.Fatalf("make image: %v\n%s", err, out)
		}
	}
	pod := func(timeout time.Duration, args ...string) string {
		t.Helper()
		return must(t, timeout, podman, append(append([]string{}, storage...), args...)...)
	}
	t.Cleanup(func() {
		run(t, time.Minute, podman, append(append([]string{}, storage...), "rmi", "-f", image, "localhost/sinkhole-test:latest")...)
	})

	// scratch, non-root, the volumes and ports the README names.
	cfg := pod(time.Minute, "image", "inspect", "--format",
		"{{.Config.User}}|{{range $k, $v := .Config.Volumes}}{{$k}},{{end}}|{{range $k, $v := .Config.ExposedPorts}}{{$k}},{{end}}|{{.Config.Entrypoint}}", image)
	if want := "65532:65532|/etc/sinkhole/lists,/var/lib/sinkhole,|5353/tcp,5353/udp,|[/usr/bin/sinkhole]"; strings.TrimSpace(cfg) != want {
		t.Errorf("image config %q, want %q", strings.TrimSpace(cfg), want)
	}
	if layers := pod(time.Minute, "image", "inspect", "--format", "{{len .RootFS.Layers}}", image); strings.TrimSpace(layers) != "3" {
		t.Errorf("%s layers, want 3 (binary, /etc, /var/lib/sinkhole): the image is not FROM scratch?", strings.TrimSpace(layers))
	}

	// Run it where the machine allows.
	var variant []string
	var why []string
	for _, v := range runVariants {
		out, err := run(t, 2*time.Minute, podman, append(append(append(append([]string{}, storage...), "run", "--rm", "--network=none"), v...), image, "version")...)
		if err == nil && strings.HasPrefix(out, "sinkhole ") {
			variant = v
			why = nil
			break
		}
		why = append(why, fmt.Sprintf("podman run %s: %v: %s", strings.Join(v, " "), err, strings.TrimSpace(out)))
	}
	if why != nil {
		t.Skipf("the image was built and inspected, but podman cannot run containers on this machine:\n%s", strings.Join(why, "\n"))
	}

	up, err := dnstest.Start(dnstest.Options{Records: []string{"example.com. 60 IN A 192.0.2.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	lists := t.TempDir()
	os.Chmod(lists, 0o755)
	os.WriteFile(filepath.Join(lists, "local.txt"), []byte("# platform: Local Test\nlocal-block.test\n"), 0o644)
	port := freePort(t)
	name := "sinkhole-test-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { run(t, time.Minute, podman, append(append([]string{}, storage...), "rm", "-f", name)...) })
	args := append([]string{"run", "-d", "--name", name, "--network=host",
		"-e", fmt.Sprintf("SINKHOLE_LISTEN=127.0.0.1:%d", port), "-e", "SINKHOLE_UPSTREAM=" + up.Addr,
		"-e", fmt.Sprintf("SINKHOLE_ADMIN=127.0.0.1:%d", freePort(t)),
		"-v", lists + ":/etc/sinkhole/lists:ro"}, variant...)
	pod(2*time.Minute, append(args, image)...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs, _ := run(t, time.Minute, podman, append(append([]string{}, storage...), "logs", name)...)
		if strings.Contains(logs, `"msg":"sinkhole serving"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not start serving in 30s:\n%s", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := ask(t, addr, "www.local-block.test"); r.Rcode != dns.RcodeNameError || edeText(r) != "blocked by local.txt:2 (Local Test)" {
		t.Errorf("a name from the mounted lists: %v", r)
	}
	if r := ask(t, addr, "example.com"); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("example.com: %v", r)
	}
	if out := pod(time.Minute, "exec", name, "/usr/bin/sinkhole", "status"); !strings.Contains(out, "ready") || !strings.Contains(out, "local.txt") {
		t.Errorf("sinkhole status in the container:\n%s", out)
	}
	pod(time.Minute, "stop", "-t", "20", name)
	if code := pod(time.Minute, "inspect", "--format", "{{.State.ExitCode}}", name); strings.TrimSpace(code) != "0" {
		t.Errorf("exit code after podman stop: %s", code)
	}
}
