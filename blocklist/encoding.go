package blocklist

import (
	"bytes"
	"fmt"
	"io"
)

// List files are UTF-8 text. A UTF-8 byte order mark at the start (which
// Windows editors write) is skipped; a UTF-16 or UTF-32 file, or a binary
// one (a NUL byte in its first block), is refused whole with one error
// saying what it looks like, instead of an error on every line.

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// sniffLen is how much of a file's start sniffEncoding looks at.
const sniffLen = 8 << 10

// sniffEncoding returns why a file starting with head is not a UTF-8 text
// file, or "" when it may be one.
func sniffEncoding(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(head, []byte{0, 0, 0xFE, 0xFF}):
		return "the file is UTF-32 text (it starts with a UTF-32 byte order mark); save it as UTF-8"
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		return "the file is UTF-16 little-endian text (it starts with the byte order mark FF FE); save it as UTF-8"
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return "the file is UTF-16 big-endian text (it starts with the byte order mark FE FF); save it as UTF-8"
	}
	i := bytes.IndexByte(head, 0)
	if i < 0 {
		return ""
	}
	// Text in UTF-16 without a byte order mark: every other byte is NUL.
	even, odd, pairs := 0, 0, min(len(head), 512)/2
	for j := 0; j+1 < pairs*2; j += 2 {
		if head[j] == 0 {
			even++
		}
		if head[j+1] == 0 {
			odd++
		}
	}
	switch {
	case pairs >= 4 && odd > pairs*3/4 && even == 0:
		return "the file looks like UTF-16 little-endian text without a byte order mark (every other byte is NUL); save it as UTF-8"
	case pairs >= 4 && even > pairs*3/4 && odd == 0:
		return "the file looks like UTF-16 big-endian text without a byte order mark (every other byte is NUL); save it as UTF-8"
	}
	return fmt.Sprintf("the file is binary, not a text list (a NUL byte at offset %d)", i)
}

// skipBOM returns r without a leading UTF-8 byte order mark.
func skipBOM(r io.Reader) io.Reader {
	var head [3]byte
	n, err := io.ReadFull(r, head[:])
	if n == 3 && bytes.Equal(head[:], utf8BOM) {
		return r
	}
	if err != nil {
		return io.MultiReader(bytes.NewReader(head[:n]), errReader{err})
	}
	return io.MultiReader(bytes.NewReader(head[:n]), r)
}

// errReader returns err once the bytes before it are read (io.EOF and
// io.ErrUnexpectedEOF both end the file).
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err == io.ErrUnexpectedEOF {
		return 0, io.EOF
	}
	return 0, e.err
}
