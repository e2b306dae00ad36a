package blocklist

import (
	"fmt"
	"strings"
)

// Action is how a blocked query is answered.
type Action uint8

// Actions a list section or rule can ask for. ActionDefault defers to the
// server's --block-action.
const (
	ActionDefault Action = iota
	ActionNXDomain
	ActionNoData
	ActionRefused
	ActionSinkhole
	// ActionLog answers normally and only records the would-be block
	// (monitor mode).
	ActionLog
	// ActionDrop sends no answer at all (RPZ rpz-drop).
	ActionDrop
	// ActionLocalData answers with records held by the rule (RPZ local data).
	ActionLocalData
)

var actionNames = [...]string{
	ActionDefault:   "default",
	ActionNXDomain:  "nxdomain",
	ActionNoData:    "nodata",
	ActionRefused:   "refused",
	ActionSinkhole:  "sinkhole",
	ActionLog:       "log",
	ActionDrop:      "drop",
	ActionLocalData: "local-data",
}

// String returns the action's list-file spelling.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// ParseAction reads an action as written in flags and "# action:" lines.
// "default" and the RPZ-only actions are not accepted.
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "nxdomain":
		return ActionNXDomain, nil
	case "nodata":
		return ActionNoData, nil
	case "refused":
		return ActionRefused, nil
	case "sinkhole":
		return ActionSinkhole, nil
	case "log":
		return ActionLog, nil
	}
	return ActionDefault, fmt.Errorf("unknown action %q (want nxdomain, nodata, refused, sinkhole or log)", s)
}

// Enforced reports whether the action changes the answer (every action but log).
func (a Action) Enforced() bool { return a != ActionLog }

// Scope says when a domain rule applies.
type Scope uint8

// Scopes of domain rules.
const (
	// ScopeAny blocks the name whatever it resolves to.
	ScopeAny Scope = iota
	// ScopeOverseas blocks the name only when the upstream answer holds an
	// address outside the home country.
	ScopeOverseas
)

// String returns the scope's list-file spelling.
func (s Scope) String() string {
	if s == ScopeOverseas {
		return "overseas"
	}
	return "any"
}

// ParseScope reads a "# scope:" value.
func ParseScope(s string) (Scope, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "any":
		return ScopeAny, nil
	case "overseas":
		return ScopeOverseas, nil
	}
	return ScopeAny, fmt.Errorf("unknown scope %q (want any or overseas)", s)
}

// Section is a run of entries in one file that share the directives in force:
// platform, action, scope and why the entries are listed (authority, order,
// contact). Rules hold a section index, so these cost nothing per rule.
type Section struct {
	File     string // display name of the list file, e.g. "foreign-exchanges.txt"
	Platform string // from "# platform:", may be empty
	Action   Action // from "# action:", ActionDefault when unset
	Scope    Scope  // from "# scope:"
	Why
}

// Why says on whose authority entries are listed; every field may be empty.
type Why struct {
	Authority string `json:"authority,omitempty"` // from "# authority:", e.g. the office that ordered the block
	Order     string `json:"order,omitempty"`     // from "# order:", an order or case reference
	Contact   string `json:"contact,omitempty"`   // from "# contact:", a URL or address for questions and appeals
}

// IsZero reports whether no field is set.
func (w Why) IsZero() bool { return w == Why{} }

// AppendText appends "; authority: A; order: O; contact: C" for the fields
// that are set.
func (w Why) AppendText(dst []byte) []byte {
	if w.Authority != "" {
		dst = append(append(dst, "; authority: "...), w.Authority...)
	}
	if w.Order != "" {
		dst = append(append(dst, "; order: "...), w.Order...)
	}
	if w.Contact != "" {
		dst = append(append(dst, "; contact: "...), w.Contact...)
	}
	return dst
}

// MatchKind is how a domain rule relates to the names it covers.
type MatchKind uint8

// Domain rule kinds.
const (
	// MatchSubtree ("example.com") covers the name and every subdomain.
	MatchSubtree MatchKind = iota
	// MatchWildcard ("*.example.com") covers subdomains only.
	MatchWildcard
	// MatchExact ("=example.com") covers the name only.
	MatchExact
)

// String names the kind.
func (k MatchKind) String() string {
	switch k {
	case MatchWildcard:
		return "wildcard"
	case MatchExact:
		return "exact"
	}
	return "domain"
}

// RuleType says which trigger a rule holds.
type RuleType uint8

// Rule types.
const (
	RuleDomain RuleType = iota
	RuleIP
	RuleASN
	RuleCountry
)

// Rule describes one list entry for humans: logs, EDE text, status and
// "sinkhole query". It is built on demand; the matchers keep a compact form.
type Rule struct {
	Type     RuleType
	Text     string // canonical spelling, e.g. "*.binance.com", "@@198.51.100.0/24", "AS13335"
	File     string
	Line     int
	Platform string
	Action   Action
	Scope    Scope
	Allow    bool // an "@@" exception
	Why           // authority, order reference and contact of the rule's section
}

// Where returns "file:line".
func (r Rule) Where() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Reason is the short text put in EDE extra text and logs:
// "blocked by foreign-exchanges.txt:12 (Binance)", followed by the
// authority, order and contact when the list gives them:
// "; authority: Ministry X; order: 2024/17; contact: https://appeal.example".
func (r Rule) Reason() string {
	verb := "blocked by"
	if r.Allow {
		verb = "allowed by"
	}
	s := fmt.Sprintf("%s %s", verb, r.Where())
	if r.Platform != "" {
		s = fmt.Sprintf("%s %s (%s)", verb, r.Where(), r.Platform)
	}
	return string(r.Why.AppendText([]byte(s)))
}

// LineError is a problem found in a list file, with its place.
type LineError struct {
	File string // display name
	Line int    // 1-based; 0 when the error is about the whole file
	Text string // the offending line, trimmed, may be empty
	Msg  string
}

// Error formats as "file:line: message: "text"".
func (e *LineError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	if e.Text == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %q", e.File, e.Line, e.Msg, e.Text)
}
