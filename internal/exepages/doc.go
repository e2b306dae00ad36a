// Package exepages gives back the page-table mappings of the running
// executable's read-only segments (its code and read-only data).
//
// When a program starts, the kernel maps the pages of its executable as
// they are touched, and around each touched page it maps the neighbouring
// pages the page cache already holds (fault-around, 64 KB at a time). The
// initialisation of every package touches code and tables all over a Go
// binary, so a server holds most of its executable resident (about 18 MB
// of sinkhole's 28 MB binary) although its steady work runs in a small
// part of it. Release drops those mappings once (madvise MADV_DONTNEED);
// the pages a later instruction or table read needs are mapped again from
// the page cache on first touch, so what stays resident is the working
// set. The page cache itself keeps the file (Release frees no page cache
// and no anonymous memory; a memory cgroup that was charged for the
// file's pages stays charged): what falls is the process's resident set
// (RssFile, VmRSS and so its peak, VmHWM, from then on).
//
// Only mappings of the executable that are not writable and hold no
// private (copy-on-write) pages are released: a position-independent
// binary's relocated read-only data is private memory that reading the
// file again would not restore, so such a mapping is left as it is.
// Elsewhere than Linux, Release does nothing and returns 0.
package exepages
