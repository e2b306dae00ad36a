package main

import (
	"fmt"
	"slices"
	"strings"
)

// feedTables writes the AXFR and IXFR tables.
func (rep *report) feedTables(b *strings.Builder) {
	fc := rep.feeds
	fmt.Fprintf(b, "### Feeds: first AXFR and IXFR propagation\n\n")
	fmt.Fprintf(b, "Real `sinkhole serve` processes (bin/sinkhole) and BIND's `named` on 127.0.0.1, each its own process. The zone is the %s-name list as RPZ (%s records: `name CNAME .` and `*.name CNAME .`, plus SOA and NS). "+
		"A secondary *blocks* when a query for the list's last name and for a name under its middle name (a wildcard match), sent with miekg/dns every 10 ms, is answered with EDE 16 (Censored). "+
		"CPU is the process's user + system time from `/proc/PID/stat`; peak RSS is `VmHWM` of `/proc/PID/status` (reset with `/proc/PID/clear_refs` where a step says so), RSS is `VmRSS`. "+
		"Wall-clock times are as good as the machine is quiet (see `uptime` above and per change).\n\n",
		humanCount(fc.names), humanCount(2*fc.names))
	if ax := rep.axfr; ax != nil {
		b.WriteString("**First AXFR.** A sinkhole primary loads the list and exports it (`--rpz-export`); then one secondary starts with an empty state directory and transfers the zone. Wall is the secondary's start until it blocks; its CPU and peak RSS are its whole life up to then (start-up included); its RSS is 3 s later.\n\n")
		b.WriteString("| Measurement | Records | Secondary CPU | Wall | Secondary peak RSS | Secondary RSS after | Primary |\n|---|---:|---:|---:|---:|---:|---|\n")
		what := fmt.Sprintf("first AXFR of a %s-name zone, sinkhole primary to one sinkhole secondary, until it blocks", humanCount(ax.Names))
		prim := fmt.Sprintf("loaded and exported in %s, %.0f MB peak; over the AXFR %s CPU, %.0f MB peak", ms(ax.PrimaryLoadMS), ax.PrimaryPeakMB, ms(ax.PrimaryCPUMS), ax.PrimaryAXFRPeakMB)
		if ax.Error != "" && ax.WallMS == 0 {
			fmt.Fprintf(b, "| %s | %d | failed: %s | | | | |\n", what, ax.Records, cell(ax.Error))
		} else {
			wall := ms(ax.WallMS)
			if ax.Error != "" {
				wall = cell(ax.Error)
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %.0f MB | %.0f MB | %s |\n", what, ax.Records, ms(ax.CPUMS), wall, ax.PeakMB, ax.SteadyMB, prim)
		}
		fmt.Fprintf(b, "\n`uptime` at the AXFR: `%s`.\n\n", ax.Uptime)
	}
	if len(rep.ixfr) == 0 {
		return
	}
	fmt.Fprintf(b, "**IXFR propagation.** A primary serves the zone and notifies %d sinkhole secondaries, each with an empty state directory, started once the primary serves, in waves of one per CPU (a wave starts once the one before blocks; the first alone when no AXFR was measured, to size the memory guard `-reserve-mb`). Once every secondary blocks with its first AXFR, the primary gets %d one-name changes, 2 s apart. "+
		"Latency is from the change until a secondary blocks the new name: for a sinkhole primary the change is one line appended to its list file (`--reload-debounce 10ms`: it reloads the file as a delta, updates its export, sends NOTIFY); for BIND it is a DNS UPDATE adding the name's two records (the latency includes the UPDATE's round trip). "+
		"*From the primary* is the same, counted from the moment the change was in service at the primary instead (the issue's definition of propagation): for sinkhole the new generation of its lists (admin status `reloaded`, the generation's build time, just before its `lists reloaded` log line), for BIND the UPDATE's answer. "+
		"\"not within N s\" is a secondary that had not blocked the name by the deadline (`-feed-timeout`). Peak RSS per secondary: over its first AXFR (start-up included), and over the changes (reset after the first AXFR).\n\n", fc.secondaries, fc.changes)
	b.WriteString("| Primary | Secondaries | One-name change until all block: slowest secondary, per change | From the primary: slowest, per change | Median secondary, per change | Secondary peak RSS, max of all: first AXFR; changes | Secondary CPU over all changes (median) | First AXFRs, all secondaries | Primary |\n|---|---:|---|---|---|---|---:|---:|---|\n")
	for _, ix := range rep.ixfr {
		what := fmt.Sprintf("%s, %s names (%s records)", ix.Primary, humanCount(ix.Names), humanCount(ix.Records))
		switch {
		case ix.NoZonemd:
			what = fmt.Sprintf("sinkhole without ZONEMD (`--rpz-export-zonemd=false`), %s names (%s records)", humanCount(ix.Names), humanCount(ix.Records))
		case ix.Zonemd != "":
			what = fmt.Sprintf("sinkhole, MERKLE3 only (`--rpz-export-zonemd=%s`), %s names (%s records)", ix.Zonemd, humanCount(ix.Names), humanCount(ix.Records))
		case ix.Primary == "sinkhole":
			what = fmt.Sprintf("sinkhole, ZONEMD SIMPLE and MERKLE3 (the default), %s names (%s records)", humanCount(ix.Names), humanCount(ix.Records))
		}
		if len(ix.Secondaries) == 0 {
			fmt.Fprintf(b, "| %s | %d | failed: %s | | | | | | |\n", what, ix.Wanted, cell(ix.Error))
			continue
		}
		var maxs, meds, froms []string
		for _, c := range ix.Changes {
			mx, md := latStats(c.LatMS, fc)
			maxs, meds = append(maxs, mx), append(meds, md)
			fm, _ := latStats(c.FromPrimaryMS, fc)
			froms = append(froms, fm)
		}
		if len(ix.Changes) == 0 {
			maxs = []string{"no change measured"}
		}
		var ip, cp, cpu []float64
		initialAll := ms(ix.InitialAllMS)
		for _, s := range ix.Secondaries {
			ip, cp, cpu = append(ip, s.InitialPeakMB), append(cp, s.ChangePeakMB), append(cpu, s.ChangeCPUMS)
			if s.InitialMS < 0 {
				initialAll = fmt.Sprintf("not within %s", fc.loadTimeout)
			}
		}
		prim := fmt.Sprintf("served the zone %s after its start, %.0f MB peak", ms(ix.PrimaryLoadMS), ix.PrimaryPeakMB)
		if len(ix.Changes) > 0 {
			prim += fmt.Sprintf("; %.0f MB peak over the changes, %.0f MB after", ix.PrimaryChgMB, ix.PrimarySteady)
			var steps, cpus []string
			for _, c := range ix.Changes {
				if ix.Primary == "sinkhole" {
					steps = append(steps, fmt.Sprintf("reload in service %s, export %s", ms(c.ReloadMS), ms(c.ExportMS)))
				} else {
					steps = append(steps, fmt.Sprintf("UPDATE %s", ms(c.UpdateMS)))
				}
				cpus = append(cpus, ms(c.PrimaryCPUMS))
			}
			prim += "; per change after the change: " + strings.Join(steps, "; ") + "; CPU per change " + strings.Join(cpus, ", ")
		}
		secs := fmt.Sprintf("%d", len(ix.Secondaries))
		if ix.Limit != "" {
			secs += " of " + fmt.Sprint(ix.Wanted) + " (" + ix.Limit + ")"
		}
		if ix.Error != "" {
			prim += "; error: " + ix.Error
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.0f MB; %.0f MB | %s | %s | %s |\n", what, cell(secs), strings.Join(maxs, ", "), strings.Join(froms, ", "), strings.Join(meds, ", "),
			slices.Max(ip), maxOr0(cp), ms(medianOf(cpu)), initialAll, cell(prim))
	}
	for _, ix := range rep.ixfr {
		if len(ix.Secondaries) == 0 {
			continue
		}
		fmt.Fprintf(b, "\nPer secondary, %s primary (`uptime` at the start: `%s`", ix.label(), ix.Uptime)
		for i, c := range ix.Changes {
			fmt.Fprintf(b, "; at change %d: `%s`", i+1, c.Uptime)
		}
		b.WriteString("):\n\n| Secondary | First AXFR until it blocks | Latency per change | From the primary, per change | Peak RSS: first AXFR | Peak RSS: changes | RSS after | CPU over the changes |\n|---:|---:|---|---|---:|---:|---:|---:|\n")
		for i, s := range ix.Secondaries {
			var lats, froms []string
			for _, c := range ix.Changes {
				lats = append(lats, latCell(c.LatMS[i], fc))
				if i < len(c.FromPrimaryMS) {
					froms = append(froms, latCell(c.FromPrimaryMS[i], fc))
				}
			}
			first := ms(s.InitialMS)
			if s.InitialMS < 0 {
				first = fmt.Sprintf("not within %s", fc.loadTimeout)
			}
			fmt.Fprintf(b, "| %d | %s | %s | %s | %.0f MB | %.0f MB | %.0f MB | %s |\n", i, first, strings.Join(lats, ", "), strings.Join(froms, ", "), s.InitialPeakMB, s.ChangePeakMB, s.SteadyMB, ms(s.ChangeCPUMS))
		}
	}
}

// latStats is the slowest and the median latency of one change over the
// secondaries; a secondary that did not follow makes the slowest "not
// within".
func latStats(lat []float64, fc *feedConfig) (string, string) {
	var ok []float64
	missed := 0
	for _, v := range lat {
		if v < 0 {
			missed++
			continue
		}
		ok = append(ok, v)
	}
	mx := ""
	if missed > 0 {
		mx = fmt.Sprintf("not within %s (%d of %d)", fc.timeout, missed, len(lat))
	} else {
		mx = ms(slices.Max(ok))
	}
	// The median counts a missed secondary as the slowest.
	all := slices.Clone(lat)
	for i, v := range all {
		if v < 0 {
			all[i] = 1e18
		}
	}
	slices.Sort(all)
	md := all[len(all)/2]
	if md >= 1e18 {
		return mx, fmt.Sprintf("not within %s", fc.timeout)
	}
	return mx, ms(md)
}

func latCell(v float64, fc *feedConfig) string {
	if v < 0 {
		return fmt.Sprintf("not within %s", fc.timeout)
	}
	return ms(v)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxOr0(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

// cell makes text safe in a table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", "/")
	return strings.ReplaceAll(s, "\n", " ")
}
