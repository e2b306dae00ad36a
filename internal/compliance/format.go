package compliance

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// Formats of Write.
var Formats = []string{"table", "csv", "json"}

// Write writes the report as a table (for people), CSV (one row per
// platform, list file and the total, for spreadsheets) or JSON.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "table":
		return r.writeTable(w)
	case "csv":
		return r.writeCSV(w)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return fmt.Errorf("unknown format %q (want table, csv or json)", format)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func (r *Report) writeTable(w io.Writer) error {
	period := "all lines"
	if !r.Since.IsZero() {
		period = "since " + stamp(r.Since)
	}
	files := "files"
	if len(r.Files) == 1 {
		files = "file"
	}
	fmt.Fprintf(w, "Enforcement report: %d audit lines from %d %s (%s)\n", r.Lines, len(r.Files), files, period)
	fmt.Fprintf(w, "%d blocks, %d monitored (not enforced), %d distinct clients, %d distinct names, %s to %s\n",
		r.Total.Blocks, r.Total.Monitored, r.Total.Clients, r.Total.Names, stamp(r.Total.First), stamp(r.Total.Last))
	for _, t := range []struct {
		title string
		rows  []Row
	}{{"PLATFORM", r.Platforms}, {"LIST FILE", r.ListFiles}} {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tBLOCKS\tMONITORED\tCLIENTS\tNAMES\tFIRST\tLAST\n", t.title)
		for _, row := range t.rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", row.Key, row.Blocks, row.Monitored, row.Clients, row.Names, stamp(row.First), stamp(row.Last))
		}
		tw.Flush()
	}
	if r.Skipped > 0 {
		fmt.Fprintf(w, "\n%d lines skipped:\n", r.Skipped)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	return nil
}

func (r *Report) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"group", "key", "blocks", "monitored", "distinct_clients", "distinct_names", "first", "last"})
	put := func(group string, row Row) {
		cw.Write([]string{group, row.Key, strconv.FormatUint(row.Blocks, 10), strconv.FormatUint(row.Monitored, 10),
			strconv.Itoa(row.Clients), strconv.Itoa(row.Names), stamp(row.First), stamp(row.Last)})
	}
	put("total", r.Total)
	for _, row := range r.Platforms {
		put("platform", row)
	}
	for _, row := range r.ListFiles {
		put("file", row)
	}
	cw.Flush()
	return cw.Error()
}
