package listsig

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/minisign"
)

func writeKeys(t *testing.T, dir, name string) (pubPath, secPath string) {
	t.Helper()
	_, pub, sec, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPath, secPath = filepath.Join(dir, name+".pub"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secPath, sec, 0o600); err != nil {
		t.Fatal(err)
	}
	return pubPath, secPath
}

func signFile(t *testing.T, secPath, path string, at time.Time) {
	t.Helper()
	priv, err := ReadSecretKey(secPath, "")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(priv, path, at)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+Suffix, sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

func reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err == nil {
		return ""
	}
	return "other: " + err.Error()
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	pub, sec := writeKeys(t, dir, "regulator")
	_, otherSec := writeKeys(t, dir, "other")
	ring, err := NewKeyring([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_700_000_000, 0)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		setup func() string // returns the path to verify
		want  string
	}{
		{"signed", func() string { p := write("a.txt", "binance.com\n"); signFile(t, sec, p, at); return p }, ""},
		{"unsigned", func() string { return write("b.txt", "okx.com\n") }, ReasonUnsigned},
		{"other key", func() string { p := write("c.txt", "okx.com\n"); signFile(t, otherSec, p, at); return p }, ReasonUnknownKey},
		{"changed after signing", func() string {
			p := write("d.txt", "okx.com\n")
			signFile(t, sec, p, at)
			write("d.txt", "okx.com\nbybit.com\n")
			return p
		}, ReasonBadSignature},
		{"renamed", func() string {
			p := write("e.txt", "okx.com\n")
			signFile(t, sec, p, at)
			q := filepath.Join(dir, "f.txt")
			os.Rename(p, q)
			os.Rename(p+Suffix, q+Suffix)
			return q
		}, ReasonWrongFile},
		{"garbage signature", func() string {
			p := write("g.txt", "okx.com\n")
			os.WriteFile(p+Suffix, []byte("not a signature\n"), 0o644)
			return p
		}, ReasonMalformed},
		{"trusted comment altered", func() string {
			p := write("h.txt", "okx.com\n")
			signFile(t, sec, p, at)
			b, _ := os.ReadFile(p + Suffix)
			b = bytes.Replace(b, []byte("timestamp:1700000000"), []byte("timestamp:1800000000"), 1)
			os.WriteFile(p+Suffix, b, 0o644)
			return p
		}, ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup()
			s, err := ring.VerifyFile(p)
			if got := reason(err); got != tc.want {
				t.Fatalf("reason %q, want %q (err %v)", got, tc.want, err)
			}
			if tc.want == "" && (!s.SignedAt.Equal(at) || s.File != filepath.Base(p) || !s.Prehash) {
				t.Fatalf("signed %+v", s)
			}
		})
	}
}

func TestRollback(t *testing.T) {
	in := time.Unix(1_700_000_100, 0)
	if err := CheckRollback(Signed{SignedAt: in.Add(-time.Second)}, in); reason(err) != ReasonRollback {
		t.Fatalf("older: %v", err)
	}
	for _, at := range []time.Time{in, in.Add(time.Hour)} {
		if err := CheckRollback(Signed{SignedAt: at}, in); err != nil {
			t.Fatalf("%v: %v", at, err)
		}
	}
	if err := CheckRollback(Signed{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

func TestLegacySignature(t *testing.T) {
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("binance.com\n")
	sig := minisign.SignWithComments(priv, msg, TrustedComment("x.txt", time.Unix(5, 0)), "legacy")
	ring := &Keyring{keys: []minisign.PublicKey{pub}}
	s, err := ring.Verify("x.txt", bytes.NewReader(msg), sig)
	if err != nil || s.Prehash || s.SignedAt.Unix() != 5 {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := ring.Verify("x.txt", bytes.NewReader([]byte("other\n")), sig); reason(err) != ReasonBadSignature {
		t.Fatalf("tampered: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	dir := t.TempDir()
	pubPath, _ := writeKeys(t, dir, "k")
	fromFile, err := ParseKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(pubPath)
	line := strings.TrimSpace(strings.Split(string(b), "\n")[1])
	fromLine, err := ParseKey(line)
	if err != nil || !fromLine.Equal(fromFile) {
		t.Fatalf("line %q: %v", line, err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing.pub"), "RWxxxx"} {
		if _, err := ParseKey(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// minisignBinary returns the reference minisign tool, or skips (outside CI).
func minisignBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("minisign is not installed (apt-get install minisign)")
		}
		t.Skip("minisign not installed; skipping interop (CI installs it)")
	}
	return p
}

// TestMinisignInterop checks both directions against the reference tool:
// files it signs (default prehashed and legacy -l) verify here, and files
// signed here verify with "minisign -V"; the secret key sinkhole writes is
// accepted by "minisign -S" too.
func TestMinisignInterop(t *testing.T) {
	bin := minisignBinary(t)
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("minisign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	list := filepath.Join(dir, "exchanges.txt")
	os.WriteFile(list, []byte("# platform: Binance\nbinance.com\n"), 0o644)

	// minisign's key and signature -> sinkhole.
	mpub, msec := filepath.Join(dir, "m.pub"), filepath.Join(dir, "m.key")
	run("-G", "-W", "-p", mpub, "-s", msec)
	ring, err := NewKeyring([]string{mpub})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-2 * time.Second)
	run("-S", "-s", msec, "-m", list)
	s, err := ring.VerifyFile(list)
	if err != nil || !s.Prehash || s.File != "exchanges.txt" || s.SignedAt.Before(before.Truncate(time.Second)) {
		t.Fatalf("minisign-signed file: %+v %v", s, err)
	}
	run("-S", "-l", "-s", msec, "-m", list)
	if s, err := ring.VerifyFile(list); err != nil || s.Prehash {
		t.Fatalf("minisign legacy signature: %+v %v", s, err)
	}
	// A minisign secret key signs in sinkhole too.
	mpriv, err := ReadSecretKey(msec, "")
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := Sign(mpriv, list, time.Now())
	os.WriteFile(list+Suffix, sig, 0o644)
	run("-V", "-p", mpub, "-m", list)

	// sinkhole's key and signature -> minisign.
	spub, ssec := writeKeys(t, dir, "s")
	signFile(t, ssec, list, time.Now())
	out := run("-V", "-p", spub, "-m", list)
	if !strings.Contains(out, "file:exchanges.txt") {
		t.Fatalf("minisign -V output lacks the trusted comment:\n%s", out)
	}
	// minisign refuses the tampered file too.
	os.WriteFile(list, []byte("binance.com\nokx.com\n"), 0o644)
	if out, err := exec.Command(bin, "-V", "-p", spub, "-m", list).CombinedOutput(); err == nil {
		t.Fatalf("minisign accepted a tampered file:\n%s", out)
	}
	// sinkhole's secret key works with minisign -S.
	os.WriteFile(list, []byte("binance.com\n"), 0o644)
	run("-S", "-s", ssec, "-m", list)
	sring, _ := NewKeyring([]string{spub})
	if _, err := sring.VerifyFile(list); err != nil {
		t.Fatal(err)
	}
}
