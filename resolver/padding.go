package resolver

import "encoding/binary"

// PaddingBlock is the block length responses over encrypted transports are
// padded to (RFC 8467 section 4.1, the recommended Block-Length Padding
// strategy for responses).
const PaddingBlock = 468

// optionPadding is the EDNS(0) Padding option code (RFC 7830).
const optionPadding = 12

// Encrypted reports whether proto names an encrypted transport, whose
// answers are padded for clients that pad (RFC 7830: padding over
// unencrypted transports only costs bytes).
func Encrypted(proto string) bool {
	switch proto {
	case "dot", "doh", "doh3", "doq":
		return true
	}
	return false
}

// WantsPadding reports whether a query carries the EDNS(0) Padding option
// (RFC 7830): such a client gets padded answers over encrypted transports.
func WantsPadding(q []byte) bool {
	rd := lastOPT(q)
	if rd < 0 {
		return false
	}
	end := rd + 2 + int(binary.BigEndian.Uint16(q[rd:]))
	for off := rd + 2; off+4 <= end; {
		code := binary.BigEndian.Uint16(q[off:])
		l := int(binary.BigEndian.Uint16(q[off+2:]))
		if code == optionPadding {
			return true
		}
		off += 4 + l
	}
	return false
}

// zeros is what padding is made of.
var zeros [PaddingBlock]byte

// Pad appends a Padding option to resp's OPT record so that its length is
// a multiple of PaddingBlock (RFC 8467), without going over limit. It
// returns resp unchanged when resp has no OPT record as its last record, or
// when padding would exceed limit. The result may share resp's array.
func Pad(resp []byte, limit int) []byte {
	rd := lastOPT(resp)
	if rd < 0 {
		return resp
	}
	n := len(resp) + 4
	pad := (PaddingBlock - n%PaddingBlock) % PaddingBlock
	if n+pad > limit {
		return resp
	}
	rdlen := int(binary.BigEndian.Uint16(resp[rd:])) + 4 + pad
	if rdlen > 0xFFFF {
		return resp
	}
	out := append(resp, byte(optionPadding>>8), byte(optionPadding), byte(pad>>8), byte(pad))
	out = append(out, zeros[:pad]...)
	binary.BigEndian.PutUint16(out[rd:], uint16(rdlen))
	return out
}
