package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/minisign"

	"github.com/sinkhole-dns/sinkhole/blocklist/listsig"
)

// TestKeygenSignVerifyCLI runs the three commands as a user would.
func TestKeygenSignVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	pub, sec := filepath.Join(dir, "reg.pub"), filepath.Join(dir, "reg.key")
	out, errOut, code := runBin(t, "keygen", "--public-key", pub, "--secret-key", sec)
	if code != 0 || !strings.Contains(out, "key id ") {
		t.Fatalf("keygen: %d\n%s%s", code, out, errOut)
	}
	if st, err := os.Stat(sec); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret key mode: %v %v", st, err)
	}
	if _, errOut, code := runBin(t, "keygen", "--public-key", pub, "--secret-key", sec); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("keygen over existing keys: %d %s", code, errOut)
	}
	list := filepath.Join(dir, "exchanges.txt")
	os.WriteFile(list, []byte("binance.com\n"), 0o644)
	if out, errOut, code := runBin(t, "sign", "--secret-key", sec, list); code != 0 || !strings.Contains(out, "exchanges.txt.minisig: signed by key") {
		t.Fatalf("sign: %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runBin(t, "verify", "--trusted-key", pub, list); code != 0 || !strings.Contains(out, "exchanges.txt: ok, signed by key") {
		t.Fatalf("verify: %d\n%s", code, out)
	}
	// The base64 line works as --trusted-key too, for check as well.
	b, _ := os.ReadFile(pub)
	line := strings.TrimSpace(strings.Split(string(b), "\n")[1])
	if out, _, code := runBin(t, "check", "--trusted-key", line, list); code != 0 || !strings.Contains(out, "ok, 1 rule (1 domain, 0 IPs, 0 ASNs), signed by key") {
		t.Fatalf("check --trusted-key: %d\n%s", code, out)
	}
	os.WriteFile(list, []byte("binance.com\nokx.com\n"), 0o644)
	if out, errOut, code := runBin(t, "verify", "--trusted-key", pub, list); code != 1 || !strings.Contains(out, "REFUSED") || !strings.Contains(errOut, "1 of 1 files refused") {
		t.Fatalf("verify tampered: %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runBin(t, "check", "--trusted-key", pub, list); code != 1 || !strings.Contains(out, "signature refused") {
		t.Fatalf("check tampered: %d\n%s", code, out)
	}
	if _, errOut, code := runBin(t, "verify", list); code != 2 || !strings.Contains(errOut, "--trusted-key") {
		t.Fatalf("verify without key: %d %s", code, errOut)
	}
}

// TestServeRefusesUnsignedLists runs the server with --trusted-key and
// shows an unsigned, a wrongly signed, a renamed and a rolled-back version
// of a list refused (status, metric, ERROR log) while the last good
// version keeps blocking.
func TestServeRefusesUnsignedLists(t *testing.T) {
	keys := t.TempDir()
	_, pubText, secText, _ := listsig.GenerateKey()
	_, _, otherSec, _ := listsig.GenerateKey()
	pub := filepath.Join(keys, "reg.pub")
	os.WriteFile(pub, pubText, 0o644)
	os.WriteFile(filepath.Join(keys, "reg.key"), secText, 0o600)
	os.WriteFile(filepath.Join(keys, "other.key"), otherSec, 0o600)
	priv, err := listsig.ReadSecretKey(filepath.Join(keys, "reg.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := listsig.ReadSecretKey(filepath.Join(keys, "other.key"), "")
	lists := t.TempDir()
	list := filepath.Join(lists, "exchanges.txt")
	sign := func(path string, k interface{ ID() uint64 }, at time.Time) {
		t.Helper()
		key := priv
		if k.ID() == other.ID() {
			key = other
		}
		sig, err := listsig.Sign(key, path, at)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path+listsig.Suffix, sig, 0o644)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.WriteFile(list, []byte("# platform: Binance\nbinance.com\n"), 0o644)
	sign(list, priv, t0)
	os.WriteFile(filepath.Join(lists, "unsigned.txt"), []byte("unsigned.example\n"), 0o644)
	up := startUpstream(t, "okx.com. 60 IN A 192.0.2.1", "unsigned.example. 60 IN A 192.0.2.2")
	state := t.TempDir()
	ts := startSinkhole(t, lists, "--upstream", up.Addr, "--trusted-key", pub, "--reload-debounce", "10ms", "--cache-size", "0", "--state-dir", state)
	blocked := func(name string) bool { return censored(ts.addr, name) }
	if !blocked("binance.com") || blocked("unsigned.example") {
		t.Fatal("signed list not enforced, or unsigned one enforced, at start")
	}
	file := func(name string) (refused, signer string) {
		for _, f := range ts.in.Status().Files {
			if f.Name == name {
				if f.Refused != nil {
					refused = f.Refused.Reason
				}
				if f.Signature != nil {
					signer = f.Signature.KeyID
				}
			}
		}
		return
	}
	if r, _ := file("unsigned.txt"); r != listsig.ReasonUnsigned {
		t.Fatalf("unsigned.txt: refusal %q", r)
	}
	if _, s := file("exchanges.txt"); s != listsig.KeyID(priv.ID()) {
		t.Fatalf("exchanges.txt signer %q", s)
	}
	steps := []struct {
		name, reason string
		change       func()
	}{
		{"unsigned edit", listsig.ReasonUnsigned, func() { os.Remove(list + listsig.Suffix); os.WriteFile(list, []byte("okx.com\n"), 0o644) }},
		{"wrong key", listsig.ReasonUnknownKey, func() { os.WriteFile(list, []byte("okx.com\n"), 0o644); sign(list, other, t0.Add(time.Minute)) }},
		{"renamed", listsig.ReasonWrongFile, func() {
			p := filepath.Join(keys, "kucoin.txt")
			os.WriteFile(p, []byte("okx.com\n"), 0o644)
			sign(p, priv, t0.Add(time.Minute))
			b, _ := os.ReadFile(p + listsig.Suffix)
			os.WriteFile(list, []byte("okx.com\n"), 0o644)
			os.WriteFile(list+listsig.Suffix, b, 0o644)
		}},
		{"rolled back", listsig.ReasonRollback, func() { os.WriteFile(list, []byte("okx.com\n"), 0o644); sign(list, priv, t0.Add(-time.Minute)) }},
	}
	for _, s := range steps {
		s.change()
		waitUntil(t, s.name+" refused", 5*time.Second, func() bool { r, _ := file("exchanges.txt"); return r == s.reason })
		if !blocked("binance.com") || blocked("okx.com") {
			t.Fatalf("%s: the last good version does not serve", s.name)
		}
		// The metrics follow the reload's listeners, which run just after
		// the version (and so the status) is in service.
		waitUntil(t, s.name+": sinkhole_list_file_refused 1", 5*time.Second, func() bool {
			return ts.metrics(t).Value("sinkhole_list_file_refused", "file", "exchanges.txt", "reason", s.reason) == 1
		})
	}
	// sinkhole status shows the signer of the version in service and the refusal.
	// (Exit status 1: unsigned.txt never loaded, so the server is not ready.)
	out, _, code := runBin(t, "status", "--admin", ts.in.admin.Addr())
	for _, w := range []string{"REFUSED rollback (last good version serving)", "SIGNED BY", listsig.KeyID(priv.ID()), t0.UTC().Format(time.RFC3339),
		"rollback (key " + listsig.KeyID(priv.ID()) + ", signed " + t0.Add(-time.Minute).UTC().Format(time.RFC3339) + ")", "REFUSED unsigned (not loaded)"} {
		if code > 1 || !strings.Contains(out, w) {
			t.Fatalf("sinkhole status lacks %q: exit %d\n%s", w, code, out)
		}
	}
	if log := ts.stderr.String(); !strings.Contains(log, "level=ERROR msg=\"list file refused") || !strings.Contains(log, "reason=rollback") {
		t.Fatalf("no ERROR log of the refusals:\n%s", log)
	}
	// A newer signed version goes into service.
	os.WriteFile(list, []byte("okx.com\n"), 0o644)
	sign(list, priv, t0.Add(2*time.Minute))
	waitUntil(t, "the new signed version", 5*time.Second, func() bool { r, _ := file("exchanges.txt"); return r == "" && blocked("okx.com") })
	if blocked("binance.com") {
		t.Fatal("old version still serving")
	}
	if v := ts.metrics(t).Value("sinkhole_list_file_signed_timestamp_seconds", "file", "exchanges.txt"); v != float64(t0.Add(2*time.Minute).Unix()) {
		t.Fatalf("signed timestamp metric %v", v)
	}
	// Restarted with an older version in place: still a rollback.
	ts.stop()
	os.WriteFile(list, []byte("binance.com\n"), 0o644)
	sign(list, priv, t0.Add(time.Minute))
	ts = startSinkhole(t, lists, "--upstream", up.Addr, "--trusted-key", pub, "--cache-size", "0", "--state-dir", state)
	if r, _ := file("exchanges.txt"); r != listsig.ReasonRollback || blocked("binance.com") {
		t.Fatalf("rollback after a restart: refusal %q", r)
	}
}

// TestSignedListURL serves a list and its URL.minisig over HTTP: a signed
// version is fetched and enforced; an unsigned, wrongly signed or rolled
// back version is refused before it replaces the copy, and the last good
// one keeps serving.
func TestSignedListURL(t *testing.T) {
	_, pubText, secText, _ := listsig.GenerateKey()
	_, _, otherText, _ := listsig.GenerateKey()
	keys := t.TempDir()
	os.WriteFile(filepath.Join(keys, "k.key"), secText, 0o600)
	os.WriteFile(filepath.Join(keys, "o.key"), otherText, 0o600)
	priv, _ := listsig.ReadSecretKey(filepath.Join(keys, "k.key"), "")
	other, _ := listsig.ReadSecretKey(filepath.Join(keys, "o.key"), "")
	pub := filepath.Join(keys, "k.pub")
	os.WriteFile(pub, pubText, 0o644)

	var mu sync.Mutex
	var body, sig []byte
	publish := func(list string, key minisign.PrivateKey, at time.Time, signed bool) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "exchanges.txt")
		os.WriteFile(p, []byte(list), 0o644)
		s, err := listsig.Sign(key, p, at)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		body, sig = []byte(list), s
		if !signed {
			sig = nil
		}
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/lists/exchanges.txt":
			w.Write(body)
		case "/lists/exchanges.txt.minisig":
			if sig == nil {
				http.NotFound(w, r)
				return
			}
			w.Write(sig)
		default:
			http.NotFound(w, r)
		}
	}))
	defer hs.Close()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	publish("binance.com\n", priv, t0, true)
	up := startUpstream(t)
	state := t.TempDir()
	ts := startSinkhole(t, writeLists(t, nil), "--upstream", up.Addr, "--trusted-key", pub, "--state-dir", state,
		"--list-url", "regulator="+hs.URL+"/lists/exchanges.txt", "--list-url-interval", "100ms")
	waitUntil(t, "the signed list", 10*time.Second, func() bool { return censored(ts.addr, "binance.com") })
	signer := ""
	for _, f := range ts.in.Status().Files {
		if f.Signature != nil {
			signer = f.Signature.KeyID
		}
	}
	if signer != listsig.KeyID(priv.ID()) {
		t.Fatalf("signer of the list URL copy %q", signer)
	}
	urlState := func() (string, string) {
		for _, f := range ts.in.Status().Feeds {
			if f.Name == "regulator" {
				return f.LastResult, f.LastError
			}
		}
		return "", ""
	}
	for _, step := range []struct {
		name, want string
		publish    func()
	}{
		{"unsigned", "HTTP 404", func() { publish("okx.com\n", priv, t0.Add(time.Minute), false) }},
		{"other key", "not a trusted key", func() { publish("okx.com\n", other, t0.Add(time.Minute), true) }},
		{"rollback", "rollback", func() { publish("okx.com\n", priv, t0.Add(-time.Minute), true) }},
	} {
		step.publish()
		waitUntil(t, step.name+" refused", 10*time.Second, func() bool {
			res, msg := urlState()
			return strings.HasPrefix(res, "refused") && strings.Contains(msg, step.want)
		})
		if !censored(ts.addr, "binance.com") || censored(ts.addr, "okx.com") {
			t.Fatalf("%s: the last good version does not serve", step.name)
		}
		if v := ts.metrics(t).Value("sinkhole_list_url_refused", "list", "regulator"); v != 1 {
			t.Fatalf("%s: sinkhole_list_url_refused %v", step.name, v)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(state, "regulator.txt")); string(b) != "binance.com\n" {
		t.Fatalf("the copy on disk was replaced: %q", b)
	}
	publish("okx.com\n", priv, t0.Add(time.Minute), true)
	waitUntil(t, "the newer signed list", 10*time.Second, func() bool { return censored(ts.addr, "okx.com") })
}

func TestTrustFlagErrors(t *testing.T) {
	_, pub, _, _ := listsig.GenerateKey()
	keyFile := filepath.Join(t.TempDir(), "k.pub")
	os.WriteFile(keyFile, pub, 0o644)
	tsig := filepath.Join(t.TempDir(), "feed.key")
	os.WriteFile(tsig, []byte(`key "feed" { algorithm hmac-sha256; secret "3Jm8aUqR0gWc5bQ2rYpK1zNvT7xLdE4hF6iO9sAeC0M="; };`), 0o644)
	lists := writeLists(t, map[string]string{"x.txt": "a.com\n"})
	base := []string{"--lists", lists, "--upstream", "127.0.0.1:53", "--state-dir", t.TempDir()}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--trusted-key", "/nonexistent.pub"}, "--trusted-key: trusted key /nonexistent.pub"},
		{[]string{"--trusted-key", "RWQnotakey"}, "--trusted-key"},
		{[]string{"--rpz-require-zonemd", "nope"}, "--rpz-require-zonemd nope: no --rpz-feed named nope"},
		{[]string{"--trusted-key", keyFile, "--rpz-feed", "reg=rpz.test@127.0.0.1"}, "--trusted-key with --rpz-feed reg: a zone transfer carries no minisign signature"},
		{[]string{"--trusted-key", keyFile, "--rpz-feed", "reg=rpz.test@127.0.0.1", "--rpz-tsig", "reg=" + tsig}, "give --rpz-require-zonemd reg"},
	} {
		if _, err := loadServeConfig(t, append(base, tt.args...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
	cfg, err := loadServeConfig(t, append(base, "--trusted-key", keyFile, "--rpz-feed", "reg=rpz.test@127.0.0.1", "--rpz-tsig", "reg="+tsig, "--rpz-require-zonemd", "reg")...)
	if err != nil || !cfg.feeds.Feeds[0].RequireZonemd || cfg.listVerifier() == nil {
		t.Fatalf("a TSIG and ZONEMD feed with --trusted-key: %v", err)
	}
}
