package blocklist

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// Compressed names. A compiled list stores each domain rule's name in an
// encoded form of about 60% of its length (17 bytes for a 28-character
// name), which the matcher compares against a query's suffix without
// decoding it:
//
//   - a header byte: the index of the name's last label in suffixDict (the
//     name is then its other labels, packed, then "." and that label),
//     encPacked (the whole name packed) or encRaw (the name's bytes follow
//     as they are: a name with a byte outside the alphabet, which the list
//     parsers do not produce but the store accepts);
//   - the packed part: three characters of the alphabet a-z, 0-9, '-', '.',
//     '_' (symbols 1 to 39) in a little-endian uint16, s0*1600 + s1*40 +
//     s2; two last characters take a uint16 with s2 = 0, one last
//     character a byte (its symbol).
//
// The encoding is a function of the name, so two names are equal exactly
// when their encodings are: duplicates are found and the hash table's
// candidates confirmed on encoded bytes, and a hit is always confirmed
// against the whole name (the hash only picks candidates).

const (
	encPacked = 254
	encRaw    = 255
	symBad    = 0x80 // symOf of a byte outside the alphabet
	// maxEncodedName bounds an encoded name (a name of 253 characters,
	// raw, plus its header), so its length fits a byte.
	maxEncodedName = 255
)

// suffixDict lists the last labels stored as one byte (the most common
// top-level domains). Its order is part of the in-memory format only.
var suffixDict = [...]string{
	"com", "net", "org", "info", "biz", "xyz", "top", "site", "online", "club", "shop", "store", "app", "dev",
	"io", "co", "me", "tv", "cc", "ws", "us", "uk", "de", "ru", "cn", "jp", "fr", "it", "nl", "es", "pl", "br",
	"au", "ca", "in", "id", "ir", "kr", "tr", "vn", "ua", "tw", "hk", "sg", "my", "th", "ph", "pk", "bd", "ng",
	"za", "ke", "eg", "ma", "mx", "ar", "cl", "pe", "ve", "ec", "bo", "py", "uy", "gt", "cr", "pa", "do", "cu",
	"ch", "at", "be", "se", "no", "dk", "fi", "is", "ie", "pt", "gr", "cz", "sk", "hu", "ro", "bg", "rs", "hr",
	"si", "ba", "mk", "al", "md", "by", "lt", "lv", "ee", "ge", "am", "az", "kz", "uz", "kg", "tj", "tm", "mn",
	"il", "sa", "ae", "qa", "kw", "bh", "om", "jo", "lb", "sy", "iq", "ye", "af", "np", "lk", "mm", "kh", "la",
	"nz", "fj", "to", "ly", "tn", "dz", "sd", "et", "gh", "ci", "sn", "cm", "ug", "tz", "rw", "zw", "zm", "mz",
	"ao", "na", "bw", "mu", "sc", "mg", "re", "lu", "li", "mc", "sm", "va", "mt", "cy", "eu", "asia", "mobi",
	"name", "pro", "gov", "edu", "mil", "int", "arpa", "live", "life", "today", "world", "news", "fun", "space",
	"website", "tech", "cloud", "link", "click", "win", "bid", "loan", "vip", "work", "icu", "buzz", "cyou",
	"rest", "monster", "best", "bet", "casino", "poker", "games", "game", "sex", "porn", "xxx", "adult", "tk",
	"ml", "ga", "cf", "gq", "su", "ly", "gg", "so", "sh", "ai", "ac", "im", "fm", "nu", "gl", "pw", "vc", "ht",
	"lat", "agency", "blog", "digital", "email", "group", "host", "media", "network", "one", "page", "plus",
	"run", "services", "solutions", "stream", "support", "team", "uno", "wiki", "zone", "men", "date", "party",
	"trade", "review", "science", "download", "racing", "accountant", "faith", "cricket", "webcam",
}

var (
	symOf     [256]uint8
	charOf    [40]byte
	suffixIdx = map[string]uint8{}
)

func init() {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._"
	for i := range symOf {
		symOf[i] = symBad
	}
	for i := 0; i < len(alphabet); i++ {
		symOf[alphabet[i]] = uint8(i + 1)
		charOf[i+1] = alphabet[i]
	}
	fillGroupChars()
	fillSymPacked()
	for i, s := range suffixDict {
		if _, dup := suffixIdx[s]; !dup && i < encPacked {
			suffixIdx[s] = uint8(i)
			if k, ok := shortLabelKey([]byte(s)); ok {
				j := shortLabelSlot(k)
				for suffixShort[j].key != 0 {
					j = (j + 1) % len(suffixShort)
				}
				suffixShort[j] = shortSuffix{k, uint8(i)}
			}
		}
	}
}

// suffixShort indexes the suffixDict labels of at most 7 bytes by
// shortLabelKey (open addressing; the dictionary fills under half of it),
// so encoding a name finds its last label without hashing a string.
var suffixShort [512]shortSuffix

type shortSuffix struct {
	key uint64 // 0: empty
	idx uint8
}

// shortLabelKey packs a label of 1 to 7 bytes and its length into a
// uint64 (never 0).
func shortLabelKey(l []byte) (uint64, bool) {
	if len(l) == 0 || len(l) > 7 {
		return 0, false
	}
	k := uint64(len(l)) << 56
	for i, c := range l {
		k |= uint64(c) << (8 * i)
	}
	return k, true
}

func shortLabelSlot(k uint64) int { return int(k * 0x9e3779b97f4a7c15 >> 55) }

// suffixIndex returns label's index in suffixDict.
func suffixIndex(label []byte) (uint8, bool) {
	k, ok := shortLabelKey(label)
	if !ok {
		i, ok := suffixIdx[string(label)] // no allocation: map index by converted bytes
		return i, ok
	}
	for j := shortLabelSlot(k); ; j = (j + 1) % len(suffixShort) {
		switch suffixShort[j].key {
		case k:
			return suffixShort[j].idx, true
		case 0:
			return 0, false
		}
	}
}

// appendEncoded appends the encoding of name to dst. The name's bytes
// are checked against the alphabet as they are packed (one pass; a
// group's value is three table loads added, see symPacked); a name with
// a byte outside it is stored raw.
func appendEncoded(dst, name []byte) []byte {
	head, h := name, byte(encPacked)
	if i := bytes.LastIndexByte(name, '.'); i > 0 {
		if k, ok := suffixIndex(name[i+1:]); ok {
			head, h = name[:i], k
		}
	}
	n := len(head)
	if n == 0 {
		return append(append(dst, encRaw), name...)
	}
	start := len(dst)
	pl := packedLen(n)
	dst = slices.Grow(dst, 1+pl)[:start+1+pl]
	out := dst[start+1 : start+1+pl]
	acc := uint32(0)
	j := 0
	for len(head) >= 3 && j+2 <= len(out) {
		v := symPacked[0][head[0]] + symPacked[1][head[1]] + symPacked[2][head[2]]
		acc |= v
		binary.LittleEndian.PutUint16(out[j:], uint16(v))
		head, j = head[3:], j+2
	}
	switch len(head) {
	case 1:
		v := symPacked[2][head[0]]
		acc |= v
		out[j] = uint8(v)
	case 2:
		v := symPacked[0][head[0]] + symPacked[1][head[1]]
		acc |= v
		binary.LittleEndian.PutUint16(out[j:], uint16(v))
	}
	if acc >= symPackedBad {
		return append(append(dst[:start], encRaw), name...)
	}
	dst[start] = h
	return dst
}

// symPacked[k][c] is byte c's symbol times 1600, 40 and 1 (k = 0, 1, 2:
// its place in a group), or symPackedBad for a byte outside the alphabet,
// so a group's value is the sum of three loads (a bad byte shows in the
// sum's bits from symPackedBad on: at most three are added).
var symPacked [3][256]uint32

const symPackedBad = 1 << 20

// fillSymPacked fills symPacked (once symOf is set).
func fillSymPacked() {
	for c := range 256 {
		s := uint32(symOf[c])
		if symOf[c] == symBad {
			symPacked[0][c], symPacked[1][c], symPacked[2][c] = symPackedBad, symPackedBad, symPackedBad
			continue
		}
		symPacked[0][c], symPacked[1][c], symPacked[2][c] = s*1600, s*40, s
	}
}

// packedLen is the length of n packed characters.
func packedLen(n int) int { return n/3*2 + n%3 }

// appendDecoded appends the name e encodes to dst.
func appendDecoded(dst, e []byte) []byte {
	h := e[0]
	if h == encRaw {
		return append(dst, e[1:]...)
	}
	i := 1
	for ; i+1 < len(e); i += 2 {
		v := uint(binary.LittleEndian.Uint16(e[i:]))
		s0, r := v/1600, v%1600
		s1, s2 := r/40, r%40
		dst = append(dst, charOf[s0])
		if s1 != 0 {
			dst = append(dst, charOf[s1])
			if s2 != 0 {
				dst = append(dst, charOf[s2])
			}
		}
	}
	if i < len(e) {
		dst = append(dst, charOf[e[i]%40])
	}
	if h != encPacked {
		dst = append(append(dst, '.'), suffixDict[h]...)
	}
	return dst
}

// suffixHash[h] is the FNV state (see hashName) after "." and suffixDict[h]
// have been hashed from the right, so hashEncoded starts a dictionary
// name's hash there.
var suffixHash = func() (t [len(suffixDict)]uint64) {
	for i, s := range suffixDict {
		t[i] = hashName([]byte("." + s))
	}
	return t
}()

// hashEncoded returns hashName of the name e encodes and its number of
// labels, without decoding it into a buffer: the packed groups are read
// from the last one back.
func hashEncoded(e []byte) (h uint64, labels int) {
	hd := e[0]
	if hd == encRaw {
		h, labels = fnvOffset64, 1
		for i := len(e) - 1; i >= 1; i-- {
			c := e[i]
			if c == '.' {
				labels++
			}
			h = (h ^ uint64(c)) * fnvPrime64
		}
		return h, labels
	}
	h, labels = fnvOffset64, 1
	if hd != encPacked {
		h, labels = suffixHash[hd], 2
	}
	j := len(e)
	if (j-1)%2 == 1 { // a last single character
		j--
		c := e[j] % 40
		labels += isDot(uint(c))
		h = (h ^ uint64(charOf[c])) * fnvPrime64
	} else if j >= 3 {
		// The last group may hold two characters (s2 = 0).
		j -= 2
		v := uint(binary.LittleEndian.Uint16(e[j:]))
		s0, r := v/1600, v%1600
		if s2 := r % 40; s2 != 0 {
			labels += isDot(s2)
			h = (h ^ uint64(charOf[s2])) * fnvPrime64
		}
		s1 := r / 40 % 40
		labels += isDot(s1) + isDot(s0)
		h = (h ^ uint64(charOf[s1])) * fnvPrime64
		h = (h ^ uint64(charOf[s0%40])) * fnvPrime64
	}
	// The other groups are whole: each is decoded by one load from
	// groupChars (no branch in the loop but its own), so the decoding of
	// a group overlaps the hashing of the one before.
	for j -= 2; j >= 1; j -= 2 {
		g := groupChars[binary.LittleEndian.Uint16(e[j:])]
		labels += int(g >> 24)
		h = (h ^ uint64(g>>16&0xff)) * fnvPrime64
		h = (h ^ uint64(g>>8&0xff)) * fnvPrime64
		h = (h ^ uint64(g&0xff)) * fnvPrime64
	}
	return h, labels
}

// groupChars decodes a packed group v of three characters: its first,
// second and third characters in bytes 0, 1 and 2 (charOf of symbols
// v/1600%40, v%1600/40 and v%40; 0 for symbol 0) and the number of dots
// among them in byte 3. It is 256 KiB: hashEncoded's loads hit the L2
// cache, where decoding a group by division takes three multiplications.
var groupChars = new([1 << 16]uint32)

// fillGroupChars fills groupChars (once charOf is set).
func fillGroupChars() {
	t := groupChars
	for v := range t {
		s0, r := uint(v)/1600%40, uint(v)%1600
		s1, s2 := r/40%40, r%40
		dots := isDot(s0) + isDot(s1) + isDot(s2)
		t[v] = uint32(charOf[s0]) | uint32(charOf[s1])<<8 | uint32(charOf[s2])<<16 | uint32(dots)<<24
	}
}

// isDot is 1 when symbol s (below 40) is the dot's, else 0, without a
// branch.
func isDot(s uint) int { return int((s ^ symDot - 1) >> 63) }

// encodedEqual reports whether e encodes name q. It does not allocate.
func encodedEqual(e []byte, q string) bool {
	h := e[0]
	if h == encRaw {
		return string(e[1:]) == q
	}
	if h != encPacked {
		t := suffixDict[h]
		k := len(q) - len(t) - 1
		if k < 1 || q[k] != '.' || q[k+1:] != t {
			return false
		}
		q = q[:k]
	}
	p := e[1:]
	n := len(q)
	if len(p) != packedLen(n) {
		return false
	}
	bad := uint8(0)
	i, j := 0, 0
	for ; i+3 <= n; i, j = i+3, j+2 {
		a, b, c := symOf[q[i]], symOf[q[i+1]], symOf[q[i+2]]
		bad |= a | b | c
		if uint16(a)*1600+uint16(b)*40+uint16(c) != binary.LittleEndian.Uint16(p[j:]) {
			return false
		}
	}
	switch n - i {
	case 1:
		a := symOf[q[i]]
		bad |= a
		if a != p[j] {
			return false
		}
	case 2:
		a, b := symOf[q[i]], symOf[q[i+1]]
		bad |= a | b
		if uint16(a)*1600+uint16(b)*40 != binary.LittleEndian.Uint16(p[j:]) {
			return false
		}
	}
	// A byte outside the alphabet never matches a packed name (its symbol
	// could otherwise add up to a valid group).
	return bad&symBad == 0
}

// symDot is the symbol of '.' (the alphabet's 38th character).
const symDot = 38

// encodedLabels returns the number of labels of the name e encodes. It
// counts the '.' symbols of the packed groups without decoding the name
// (a blocked answer asks it of the matched rule, for its SOA's owner).
func encodedLabels(e []byte) int {
	h := e[0]
	if h == encRaw {
		return bytes.Count(e[1:], dot) + 1
	}
	n := 1
	if h != encPacked {
		n++ // the packed labels, then "." and the dictionary's label
	}
	i := 1
	for ; i+1 < len(e); i += 2 {
		v := uint(binary.LittleEndian.Uint16(e[i:]))
		r := v % 1600
		if v/1600 == symDot {
			n++
		}
		if r/40 == symDot {
			n++
		}
		if r%40 == symDot {
			n++
		}
	}
	if i < len(e) && e[i] == symDot {
		n++
	}
	return n
}
