package rpz

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TSIGKey is a shared secret for signing transfers and NOTIFY (RFC 8945).
type TSIGKey struct {
	Name      string // key name, FQDN, lower case
	Algorithm string // e.g. dns.HmacSHA256
	Secret    string // base64
}

// tsigAlgorithms maps the algorithm names of key files to miekg/dns's.
var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// maxKeyFileSize caps a TSIG key file.
const maxKeyFileSize = 64 << 10

// LoadTSIGKey reads a key file in the format BIND's tsig-keygen writes
// (and named.conf, Knot's keymgr and PowerDNS accept):
//
//	key "sinkhole-feed" {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
//
// The first key in the file is used.
func LoadTSIGKey(path string) (*TSIGKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("%s: not a key file (%d bytes)", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseTSIGKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParseTSIGKey parses the text of a key file (see LoadTSIGKey).
func ParseTSIGKey(text string) (*TSIGKey, error) {
	toks := keyTokens(text)
	if len(toks) < 3 || toks[0] != "key" || toks[2] != "{" {
		return nil, fmt.Errorf(`want key "NAME" { algorithm ALG; secret "BASE64"; };`)
	}
	k := &TSIGKey{}
	name := strings.Trim(toks[1], `"`)
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("key name %q is not a domain name", name)
	}
	k.Name = strings.ToLower(dns.Fqdn(name))
	i := 3
	for i < len(toks) && toks[i] != "}" {
		if i+2 >= len(toks) || toks[i+2] != ";" {
			return nil, fmt.Errorf("key %s: want \"option value;\" after %q", name, toks[i])
		}
		opt, val := toks[i], strings.Trim(toks[i+1], `"`)
		switch opt {
		case "algorithm":
			alg, ok := tsigAlgorithms[strings.ToLower(val)]
			if !ok {
				return nil, fmt.Errorf("key %s: unsupported algorithm %q (want hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384 or hmac-sha512)", name, val)
			}
			k.Algorithm = alg
		case "secret":
			if _, err := base64.StdEncoding.DecodeString(val); err != nil || val == "" {
				return nil, fmt.Errorf("key %s: secret is not base64", name)
			}
			k.Secret = val
		default:
			return nil, fmt.Errorf("key %s: unknown option %q", name, opt)
		}
		i += 3
	}
	if k.Algorithm == "" || k.Secret == "" {
		return nil, fmt.Errorf("key %s: needs an algorithm and a secret", name)
	}
	return k, nil
}

// keyTokens splits named.conf-style text into words, quoted strings and
// the punctuation { } ;, dropping # // and /* */ comments.
func keyTokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += end + 4
		case c == '{' || c == '}' || c == ';':
			out = append(out, string(c))
			i++
		case c == '"':
			end := strings.IndexByte(s[i+1:], '"')
			if end < 0 {
				return append(out, s[i:])
			}
			out = append(out, s[i:i+end+2])
			i += end + 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};\"", rune(s[j])) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// secrets returns the map miekg/dns clients take.
func (k *TSIGKey) secrets() map[string]string {
	if k == nil {
		return nil
	}
	return map[string]string{k.Name: k.Secret}
}

// sign adds a TSIG record to m (the client signs it when packing).
func (k *TSIGKey) sign(m *dns.Msg) {
	if k != nil {
		m.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
	}
}

// verify checks the TSIG of a received message against k.
func (k *TSIGKey) verify(pkt []byte, m *dns.Msg) bool {
	ts := m.IsTsig()
	if k == nil || ts == nil || !strings.EqualFold(ts.Hdr.Name, k.Name) || !strings.EqualFold(ts.Algorithm, k.Algorithm) {
		return false
	}
	return dns.TsigVerify(pkt, k.Secret, "", false) == nil
}

// signReply signs a response to a TSIG-signed request (the request's MAC
// is part of the response's). It returns r unchanged when signing fails.
func (k *TSIGKey) signReply(r, req *dns.Msg) *dns.Msg {
	ts := req.IsTsig()
	if k == nil || ts == nil {
		return r
	}
	r.Compress = true
	r.SetTsig(k.Name, k.Algorithm, 300, time.Now().Unix())
	buf, _, err := dns.TsigGenerate(r, k.Secret, ts.MAC, false)
	if err != nil {
		return r
	}
	signed := new(dns.Msg)
	if signed.Unpack(buf) != nil {
		return r
	}
	return signed
}
