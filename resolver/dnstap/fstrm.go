package dnstap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame Streams (https://github.com/farsightsec/fstrm, "Frame Streams
// protocol"): data frames are a 32-bit big-endian length and the payload;
// a control frame is an escape (a zero length), its own length, its type
// and fields. On a socket the writer sends READY, the reader answers
// ACCEPT, the writer sends START, the data frames and STOP, the reader
// answers FINISH. A file holds START, the data frames and STOP.

// Control frame types.
const (
	ctlAccept = 0x01
	ctlStart  = 0x02
	ctlStop   = 0x03
	ctlReady  = 0x04
	ctlFinish = 0x05

	fieldContentType = 0x01

	// maxControl is the largest control frame fstrm accepts.
	maxControl = 512
)

// appendControl appends a control frame of type typ naming the content types.
func appendControl(dst []byte, typ uint32, contentTypes ...string) []byte {
	n := 4
	for _, ct := range contentTypes {
		n += 8 + len(ct)
	}
	dst = binary.BigEndian.AppendUint32(dst, 0) // escape
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = binary.BigEndian.AppendUint32(dst, typ)
	for _, ct := range contentTypes {
		dst = binary.BigEndian.AppendUint32(dst, fieldContentType)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(ct)))
		dst = append(dst, ct...)
	}
	return dst
}

// control is a decoded control frame.
type control struct {
	typ          uint32
	contentTypes []string
}

// readControl reads one control frame; a data frame is an error.
func readControl(r io.Reader) (control, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return control{}, err
	}
	if binary.BigEndian.Uint32(hdr[:4]) != 0 {
		return control{}, errors.New("frame streams: data frame where a control frame was expected")
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n < 4 || n > maxControl {
		return control{}, fmt.Errorf("frame streams: control frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return control{}, err
	}
	c := control{typ: binary.BigEndian.Uint32(body)}
	for f := body[4:]; len(f) > 0; {
		if len(f) < 8 {
			return c, errors.New("frame streams: truncated control field")
		}
		typ, l := binary.BigEndian.Uint32(f), binary.BigEndian.Uint32(f[4:])
		if uint32(len(f)-8) < l {
			return c, errors.New("frame streams: control field longer than its frame")
		}
		if typ == fieldContentType {
			c.contentTypes = append(c.contentTypes, string(f[8:8+l]))
		}
		f = f[8+l:]
	}
	return c, nil
}

// handshake runs the writer's side of the bidirectional handshake on rw:
// READY, the reader's ACCEPT (which must name ContentType, or nothing),
// START.
func handshake(rw io.ReadWriter) error {
	if _, err := rw.Write(appendControl(nil, ctlReady, ContentType)); err != nil {
		return fmt.Errorf("frame streams READY: %w", err)
	}
	c, err := readControl(rw)
	if err != nil {
		return fmt.Errorf("frame streams: waiting for ACCEPT: %w", err)
	}
	if c.typ != ctlAccept {
		return fmt.Errorf("frame streams: collector sent control frame %d, want ACCEPT", c.typ)
	}
	if len(c.contentTypes) > 0 && !contains(c.contentTypes, ContentType) {
		return fmt.Errorf("frame streams: collector accepts %q, not %q", c.contentTypes, ContentType)
	}
	if _, err := rw.Write(appendControl(nil, ctlStart, ContentType)); err != nil {
		return fmt.Errorf("frame streams START: %w", err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
