package blocklist

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// A rule on a public suffix (com, co.uk, github.io: a name under which
// anyone can register their own) blocks every name of every owner under
// it, which no regulator's list means to do; it is an error with its line
// unless the file says "# allow-public-suffix" before it. Rules on one
// name only (=com, an RPZ trigger without "*.") are not over-broad.

// allowPublicSuffixDirective is the comment line that lets the rules after
// it be public suffixes.
const allowPublicSuffixDirective = "allow-public-suffix"

// publicSuffixMsg returns why a rule covering name and its subdomains is
// over-broad, or "" when it is not. name is canonical (lower case,
// punycode, no trailing dot).
//
// Single labels that are not top-level domains (wpad, intranet) match
// only the list's default rule and are not public suffixes.
func publicSuffixMsg(name []byte, hint string) string {
	s := string(name)
	ps, icann := publicsuffix.PublicSuffix(s)
	if ps != s || (!icann && !strings.Contains(s, ".")) {
		return ""
	}
	return "\"" + s + "\" is a public suffix: the rule would block every name registered under it (" + hint + ")"
}

// Hints of publicSuffixMsg.
const (
	suffixHintList = "write \"# allow-public-suffix\" above it if that is meant"
	suffixHintRPZ  = "list the names under it instead"
)
