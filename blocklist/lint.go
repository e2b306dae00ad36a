package blocklist

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
)

// Lint reads list files as "sinkhole check" does and returns warnings
// that do not stop them from loading: rules listed twice (in one file or
// across them), rules already covered by a listed parent with the same
// effect (platform, action, scope), and files without a rule. Files that
// do not parse are skipped (CheckFile reports their errors).
func Lint(paths []string, maxSize int64) []*LineError {
	l := &linter{seen: map[string]lintRule{}, subtree: map[string]lintRule{}}
	var rules []lintRule
	for _, p := range paths {
		fs, errs := CheckFile(p, maxSize)
		if len(errs) > 0 {
			continue
		}
		if fs.Rules() == 0 {
			l.out = append(l.out, &LineError{File: p, Msg: "warning: the file has no rules (a list that is empty or only comments enforces nothing)"})
			continue
		}
		l.file = p
		l.rules = l.rules[:0]
		l.outStart = len(l.out)
		parse, ok := formats[strings.ToLower(filepath.Ext(p))]
		if !ok {
			parse = parseList
		}
		file, err := openList(p, maxSizeOr(maxSize), nil)
		if err != nil {
			continue
		}
		l.builder = newBuilder(0, 0)
		l.builder.startFile()
		file.parse(filepath.Base(p), parse, l)
		file.close()
		rules = append(rules, l.rules...)
	}
	// Parents first: every subtree and wildcard rule is indexed, then each
	// rule looks for a listed ancestor.
	for _, r := range rules {
		if r.kind != MatchExact && r.name != "" {
			key := lintKey(r.name, r.allow, r.sec)
			if _, ok := l.subtree[key]; !ok || r.kind == MatchSubtree {
				l.subtree[key] = r
			}
		}
	}
	for _, r := range rules {
		if r.name == "" {
			continue
		}
		name := r.name
		if r.kind == MatchSubtree {
			// A subtree rule is covered by a parent subtree or wildcard.
			if p, ok := l.ancestor(name, r); ok {
				l.warnf(r, "%s is already covered by %s (%s:%d)", describeLint(r), describeLint(p), p.file, p.line)
			}
			continue
		}
		// Exact and wildcard rules: also by a subtree rule on the name
		// itself (an exact name by a wildcard on its parent).
		if p, ok := l.subtree[lintKey(name, r.allow, r.sec)]; ok && p.kind == MatchSubtree && (r.kind == MatchWildcard || r.kind == MatchExact) {
			l.warnf(r, "%s is already covered by %s (%s:%d)", describeLint(r), describeLint(p), p.file, p.line)
			continue
		}
		if p, ok := l.ancestor(name, r); ok {
			l.warnf(r, "%s is already covered by %s (%s:%d)", describeLint(r), describeLint(p), p.file, p.line)
		}
	}
	return l.out
}

func maxSizeOr(n int64) int64 {
	if n <= 0 {
		return DefaultMaxFileSize
	}
	return n
}

// lintRule is one rule as Lint sees it.
type lintRule struct {
	file  string
	line  int
	text  string // the rule's key for duplicates
	name  string // domain rules only
	kind  MatchKind
	allow bool
	sec   Section
}

// linter is the entrySink of Lint: a builder (so it is every sink a
// parser needs) that also records each rule.
type linter struct {
	*builder
	file    string
	sec     Section
	seen    map[string]lintRule // duplicate key -> first rule
	subtree map[string]lintRule // parent key -> subtree or wildcard rule
	rules   []lintRule          // of the file being read
	out     []*LineError
	// outStart is where the warnings of the file being read begin.
	outStart int
}

func lintKey(name string, allow bool, sec Section) string {
	return fmt.Sprintf("%s\x00%v\x00%s\x00%d\x00%d", name, allow, sec.Platform, sec.Action, sec.Scope)
}

// ancestor finds a listed subtree or wildcard rule above name with the
// same effect as r.
func (l *linter) ancestor(name string, r lintRule) (lintRule, bool) {
	for i := strings.IndexByte(name, '.'); i >= 0; i = strings.IndexByte(name, '.') {
		name = name[i+1:]
		if p, ok := l.subtree[lintKey(name, r.allow, r.sec)]; ok {
			return p, true
		}
	}
	return lintRule{}, false
}

func describeLint(r lintRule) string {
	prefix := ""
	if r.allow {
		prefix = "@@"
	}
	switch r.kind {
	case MatchWildcard:
		return prefix + "*." + r.name
	case MatchExact:
		return prefix + "=" + r.name
	}
	return prefix + r.name
}

func (l *linter) warnf(r lintRule, format string, args ...any) {
	l.out = append(l.out, &LineError{File: r.file, Line: r.line, Msg: "warning: " + fmt.Sprintf(format, args...)})
}

func (l *linter) add(r lintRule) {
	r.file, r.sec = l.file, l.sec
	if first, dup := l.seen[r.text]; dup {
		l.warnf(r, "duplicate of %s:%d", first.file, first.line)
		return
	}
	l.seen[r.text] = r
	l.rules = append(l.rules, r)
}

func (l *linter) beginSection(s Section) { l.sec = s; l.builder.beginSection(s) }

func (l *linter) useSection(s Section) { l.sec = s; l.builder.useSection(s) }

// restart forgets the file being read (its parser starts over).
func (l *linter) restart() {
	for _, r := range l.rules {
		if first, ok := l.seen[r.text]; ok && first.file == l.file && first.line == r.line {
			delete(l.seen, r.text)
		}
	}
	l.rules = l.rules[:0]
	l.out = l.out[:l.outStart]
	l.builder.restart()
}

func (l *linter) addDomain(name []byte, kind MatchKind, allow bool, line int) {
	r := lintRule{line: line, name: string(name), kind: kind, allow: allow}
	r.text = "domain\x00" + describeLint(r)
	l.add(r)
	l.builder.addDomain(name, kind, allow, line)
}

func (l *linter) addPrefix(p netip.Prefix, allow bool, line int) {
	l.add(lintRule{line: line, text: fmt.Sprintf("ip\x00%v\x00%s", allow, p)})
	l.builder.addPrefix(p, allow, line)
}

func (l *linter) addASN(asn uint32, allow bool, line int) {
	l.add(lintRule{line: line, text: fmt.Sprintf("asn\x00%v\x00%d", allow, asn)})
	l.builder.addASN(asn, allow, line)
}
