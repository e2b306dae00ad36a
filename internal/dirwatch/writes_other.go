//go:build !linux

package dirwatch

import (
	"log/slog"
	"time"
)

// writeTracker is not available here: files being written are recognised
// by their change time only (the list store's settle time).
type writeTracker struct{}

func newWriteTracker(*slog.Logger, func(string)) *writeTracker { return nil }

func (t *writeTracker) add(string)                         {}
func (t *writeTracker) remove(string)                      {}
func (t *writeTracker) writing(string, time.Duration) bool { return false }
func (t *writeTracker) close()                             {}
