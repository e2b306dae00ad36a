package tlscert

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sinkhole-dns/sinkhole/internal/tlscert/certtest"
)

func TestLoadAndReload(t *testing.T) {
	ca := certtest.NewCA(t, "test CA")
	dir := t.TempDir()
	first := ca.Issue(t, time.Time{}, "dns.example.test", "192.0.2.1")
	cert, key := first.Write(t, dir)
	s, err := Load(Options{CertFile: cert, KeyFile: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if strings.Join(st.Names, ",") != "dns.example.test,192.0.2.1" || !st.NotAfter.Equal(first.Leaf.NotAfter) || st.LastError != "" {
		t.Errorf("status %+v", st)
	}
	served := func() string {
		c, err := s.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if served() != first.Leaf.SerialNumber.String() {
		t.Fatal("not the loaded certificate")
	}

	bad := []struct {
		name      string
		cert, key []byte
		wantInErr string
	}{
		{"key of another certificate", ca.Issue(t, time.Time{}, "x.test").CertPEM, first.KeyPEM, "cert.pem"},
		{"not PEM", []byte("garbage"), first.KeyPEM, "cert.pem"},
		{"empty key", first.CertPEM, nil, "key.pem: empty"},
	}
	for _, c := range bad {
		os.WriteFile(cert, c.cert, 0o600)
		os.WriteFile(key, c.key, 0o600)
		if err := s.Reload(); err == nil || !strings.Contains(err.Error(), c.wantInErr) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.wantInErr)
		}
		if served() != first.Leaf.SerialNumber.String() {
			t.Errorf("%s: the last good pair was replaced", c.name)
		}
		if st := s.Status(); st.LastError == "" || st.LastErrorAt.IsZero() {
			t.Errorf("%s: status %+v", c.name, st)
		}
	}
	os.Remove(cert)
	if err := s.Reload(); err == nil {
		t.Error("a missing file loaded")
	}

	next := ca.Issue(t, time.Now().Add(48*time.Hour), "dns2.example.test")
	next.Write(t, dir)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if served() != next.Leaf.SerialNumber.String() {
		t.Error("the new pair does not serve")
	}
	if st := s.Status(); st.LastError != "" || st.Names[0] != "dns2.example.test" || !s.NotAfter().Equal(next.Leaf.NotAfter) {
		t.Errorf("status after the good reload %+v", st)
	}
	if _, err := Load(Options{CertFile: filepath.Join(dir, "none.pem"), KeyFile: key}); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// A watched pair replaced on disk (by rename, as deploy tools do) is picked
// up without a call to Reload.
func TestWatch(t *testing.T) {
	ca := certtest.NewCA(t, "test CA")
	dir := t.TempDir()
	cert, key := ca.Issue(t, time.Time{}, "dns.example.test").Write(t, dir)
	s, err := Load(Options{CertFile: cert, KeyFile: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Watch(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next := ca.Issue(t, time.Time{}, "renewed.example.test")
	next.Write(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, _ := s.GetCertificate(nil); c.Leaf.SerialNumber.Cmp(next.Leaf.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed pair was not picked up within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
