package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/sdnotify"
)

// systemd is the server's side of a Type=notify unit: READY=1 once the
// lists are loaded and DNS is listening, WATCHDOG=1 keep-alives at half the
// unit's WatchdogSec=, STOPPING=1 when the drain begins. Outside systemd it
// does nothing.
type systemd struct {
	n    *sdnotify.Notifier
	done chan struct{}
}

// notifySystemd reports the started server ready and starts the watchdog
// keep-alives. start has returned: the first snapshot is in service and
// every listener is bound.
func notifySystemd(in *instance) *systemd {
	sd := &systemd{n: sdnotify.FromEnv(), done: make(chan struct{})}
	if !sd.n.Enabled() {
		return sd
	}
	snap := in.store.Current()
	status := fmt.Sprintf("serving %s on %s, list generation %d", plural(snap.RuleCount(), "rule"), strings.Join(in.dns.Addrs(), ", "), snap.Generation)
	if err := sd.n.Send(sdnotify.Ready, sdnotify.Status(status)); err != nil {
		in.log.Warn("systemd notification failed", "err", err)
	}
	if every := sdnotify.WatchdogInterval() / 2; every > 0 {
		in.log.Info("systemd watchdog on", "keepalive_every", every)
		go sd.keepAlive(in, every)
	}
	return sd
}

// keepAlive sends WATCHDOG=1 while the server is serving: it stops when
// the drain begins, and a process that hangs stops sending, so systemd
// restarts it.
func (sd *systemd) keepAlive(in *instance, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-sd.done:
			return
		case <-t.C:
			if !in.store.Loaded() {
				continue
			}
			if err := sd.n.Send(sdnotify.Watchdog); err != nil {
				in.log.Warn("systemd watchdog keep-alive failed", "err", err)
			}
		}
	}
}

// stopping tells systemd the server is draining, and ends the keep-alives.
func (sd *systemd) stopping() {
	close(sd.done)
	sd.n.Send(sdnotify.Stopping)
}

// credentialPrefix marks a file option read from the credentials systemd
// passes the service (LoadCredential=): "credential:ID" is the file ID in
// $CREDENTIALS_DIRECTORY. The files can then stay readable by root only.
const credentialPrefix = "credential:"

// credentialPath resolves a "credential:ID" file option; other paths are
// returned as they are.
func credentialPath(p string) (string, error) {
	id, ok := strings.CutPrefix(p, credentialPrefix)
	if !ok {
		return p, nil
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return "", fmt.Errorf("%s: $CREDENTIALS_DIRECTORY is not set (credentials come from systemd's LoadCredential=)", p)
	}
	if id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("%s: want credential:ID, a file name in $CREDENTIALS_DIRECTORY", p)
	}
	return filepath.Join(dir, id), nil
}

// credentialValues resolves the FILE of NAME=FILE values given as
// credential:ID.
func credentialValues(vals []string) ([]string, error) {
	out := make([]string, len(vals))
	for i, v := range vals {
		name, file, _ := strings.Cut(v, "=")
		p, err := credentialPath(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[i] = v
		if p != file {
			out[i] = name + "=" + p
		}
	}
	return out, nil
}

// adminTokenCredential is the credential the admin token is read from when
// --admin-token-file is not given: the packaged unit loads every file of
// /etc/sinkhole/credentials as sinkhole_<file>.
const adminTokenCredential = "sinkhole_admin-token"

// adminTokenFile is the token file serve uses: the flag's, or else the
// admin-token credential when systemd passed one.
func adminTokenFile(flag string) string {
	if flag != "" {
		return flag
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		if p := filepath.Join(dir, adminTokenCredential); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
