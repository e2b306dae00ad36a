package blocklist

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// The one-line change benchmarks: make bench-scale's lists (1M and 10M
// names, native and RPZ) loaded once, then, per round, one line appended
// at the end, inserted in the middle, deleted from the middle or edited
// in place (same length) in the middle, and the reload, which must be
// applied as a delta, measured. The merge of each delta runs between
// rounds, outside the measurement. Reported: the CPU time of the reload
// (user+system, every goroutine) per change, and the heap the reload adds
// at its peak over the heap held before it.

func BenchmarkChangeNative1M(b *testing.B)  { benchChanges(b, "native", million) }
func BenchmarkChangeNative10M(b *testing.B) { benchChanges(b, "native", 10*million) }
func BenchmarkChangeRPZ1M(b *testing.B)     { benchChanges(b, "rpz", million) }
func BenchmarkChangeRPZ10M(b *testing.B)    { benchChanges(b, "rpz", 10*million) }

// changeOps are the one-line edits of the change benchmarks.
var changeOps = []string{"append", "insert", "delete", "edit"}

func benchChanges(b *testing.B, format string, n int) {
	for _, op := range changeOps {
		b.Run(op, func(b *testing.B) { benchChange(b, format, n, op) })
	}
}

func benchChange(b *testing.B, format string, n int, op string) {
	dir := scaleList(b, format, n)
	path := filepath.Join(dir, listFileName(format))
	// The fixture as it was, for the other benchmarks.
	orig := path + ".orig"
	if err := copyFile(path, orig); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := os.Rename(orig, path); err != nil {
			b.Error(err)
		}
	}()
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	s := NewStore(Options{Dirs: []string{dir}, Logger: discardLogger(), MaxFileSize: 4 << 30})
	if rep, err := s.Reload(context.Background(), "bench"); err != nil || rep.Failed() {
		b.Fatalf("load: %v %v", err, rep.Errors())
	}
	var cpu int64
	var peak uint64
	i := 0
	for b.Loop() {
		b.StopTimer()
		if err := changeLine(path, format, op, i); err != nil {
			b.Fatal(err)
		}
		i++
		runtime.GC()
		base := heapObjects()
		stop := samplePeakHeap()
		c0 := cpuTime()
		b.StartTimer()
		rep, err := s.Reload(context.Background(), "bench")
		b.StopTimer()
		cpu += (cpuTime() - c0).Nanoseconds()
		peak = max(peak, stop()-base)
		if err != nil || !rep.Changed || !rep.Delta {
			b.Fatalf("%s: not applied as a delta: %v %+v", op, err, rep)
		}
		s.WaitCompacted()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/float64(i)/1e6, "cpu-ms/change")
	b.ReportMetric(float64(peak)/1e6, "peak-extra-heap-MB")
}

// changeLine makes one one-line edit (op, of changeOps) to the list at
// path: k numbers the new names.
func changeLine(path, format, op string, k int) error {
	line := fmt.Sprintf("chg-%d.bench-change.example\n", k)
	if format == "rpz" {
		line = fmt.Sprintf("chg-%d.bench-change.example CNAME .\n", k)
	}
	switch op {
	case "append":
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(line)
		return errorsJoin(err, f.Close())
	case "edit":
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		at, err := middleLine(f, format)
		if err != nil {
			return err
		}
		var c [1]byte
		if _, err := f.ReadAt(c[:], at); err != nil {
			return err
		}
		c[0]++
		if c[0] > 'z' {
			c[0] = 'a'
		}
		_, err = f.WriteAt(c[:], at)
		return err
	case "insert", "delete":
		return rewriteMiddle(path, format, func(w *bufio.Writer, r *bufio.Reader) error {
			if op == "insert" {
				_, err := w.WriteString(line)
				return err
			}
			_, err := r.ReadSlice('\n') // the line dropped
			return err
		})
	}
	return fmt.Errorf("unknown change %q", op)
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// middleLine returns the offset of the first line at or after the middle
// of f that starts with a lower-case letter (a name: not an RPZ wildcard,
// a directive or a comment).
func middleLine(f *os.File, format string) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	at := st.Size() / 2
	r := bufio.NewReader(io.NewSectionReader(f, at, st.Size()-at))
	skip, err := r.ReadSlice('\n') // the rest of the line at the middle
	if err != nil {
		return 0, err
	}
	at += int64(len(skip))
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if l[0] >= 'a' && l[0] <= 'z' {
			return at, nil
		}
		at += int64(len(l))
	}
}

// rewriteMiddle writes the file again (to a temporary file renamed over
// it) with edit run at the first name line at or after its middle.
func rewriteMiddle(path, format string, edit func(*bufio.Writer, *bufio.Reader) error) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	at, err := middleLine(src, format)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	dst, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(dst, 1<<20)
	if _, err := io.Copy(w, io.NewSectionReader(src, 0, at)); err != nil {
		dst.Close()
		return err
	}
	if _, err := src.Seek(at, io.SeekStart); err != nil {
		dst.Close()
		return err
	}
	r := bufio.NewReaderSize(src, 1<<20)
	if err := edit(w, r); err != nil {
		dst.Close()
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		dst.Close()
		return err
	}
	if err := errorsJoin(w.Flush(), dst.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// copyFile copies the file at src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errorsJoin(err, out.Close())
}

func listFileName(format string) string {
	if format == "rpz" {
		return "bench.rpz"
	}
	return "bench.txt"
}
