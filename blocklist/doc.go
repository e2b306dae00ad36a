// Package blocklist turns regulator list files into an immutable, compiled
// Snapshot that answers "is this name (or this IP, or this ASN) blocked, and
// by which rule?" without locks or allocations, and keeps the current
// Snapshot in a Store that reloads atomically when the files change.
//
// The pieces, one file each:
//
//   - rules.go: actions, scopes, sections and rule references.
//   - parse.go: the list line format (domains, wildcards, exact names,
//     exceptions, hosts-file and adblock lines, IPs, CIDR prefixes, ASNs and
//     the "# platform:", "# scope:" and "# action:" directives).
//   - rpz.go: RPZ zone files (*.rpz, *.zone): QNAME and response-IP
//     triggers with their NXDOMAIN, NODATA, PASSTHRU, DROP and local-data
//     policies.
//   - rpzfast.go: the streaming parser for the common RPZ record forms.
//   - delta.go, storedelta.go: a small change to one file applied as a
//     delta (rules taken out, a small table of added rules, line moves)
//     over the compiled lists, merged into a new base in the background;
//     rpzdelta.go: the same for RPZ zone files (changed lines widened to
//     whole owners, parsed with the $ORIGIN, $TTL and apex in force).
//   - domains.go: the compact suffix matcher for millions of names.
//   - prefixes.go: longest-prefix IP matching over disjoint intervals.
//   - snapshot.go: a compiled generation of every list file.
//   - store.go: reload with per-file last-good state.
//   - install.go: checking a file's data and installing it atomically (the
//     admin API's list uploads).
//   - verify.go: the Verifier hook that must accept a file (its signature,
//     see listsig) before its rules serve.
//
// Watching the list directories is internal/dirwatch's job; fetching list
// URLs is urlfeed's, and verifying minisign signatures listsig's.
package blocklist
