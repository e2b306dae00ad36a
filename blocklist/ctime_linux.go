package blocklist

import (
	"os"
	"syscall"
	"time"
)

// changeTime returns when a file's inode last changed (ctime): every write,
// truncation, rename and attribute change sets it, and unlike the
// modification time no tool can set it back.
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
