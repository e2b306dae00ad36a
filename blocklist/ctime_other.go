//go:build !linux

package blocklist

import (
	"os"
	"time"
)

// changeTime returns when a file last changed (its modification time where
// the inode change time is not at hand).
func changeTime(fi os.FileInfo) time.Time { return fi.ModTime() }
