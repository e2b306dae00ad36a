package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sinkhole-dns/sinkhole/blocklist"
)

// Reload results (the result label of sinkhole_list_reloads_total).
const (
	ReloadSuccess    = "success"     // every file loaded
	ReloadFileErrors = "file_errors" // some files failed; their last good versions serve
	ReloadFailure    = "failure"     // nothing was reloaded (directory unreadable, cancelled)
)

// listMetrics describes the list reloads and the snapshot in service.
type listMetrics struct {
	reloads      *prometheus.CounterVec
	lastReload   prometheus.Gauge
	lastSuccess  prometheus.Gauge
	lastDuration prometheus.Gauge
	snap         atomic.Pointer[blocklist.Snapshot]
}

var (
	generationDesc = prometheus.NewDesc(namespace+"_list_generation",
		"Generation of the list snapshot in service (increases with every change of rules).", nil, nil)
	rulesDesc = prometheus.NewDesc(namespace+"_list_rules",
		"Rules in service per list file (for a broken file, those of its last good version).", []string{"file"}, nil)
	fileErrorsDesc = prometheus.NewDesc(namespace+"_list_file_errors",
		"Errors in each list file as it is on disk; above 0 the file is not loaded and its last good version (if any) serves.",
		[]string{"file"}, nil)
	fileRefusedDesc = prometheus.NewDesc(namespace+"_list_file_refused",
		"1 for each list file whose version on disk was refused by --trusted-key (reason: unsigned, malformed, unknown_key, bad_signature, wrong_file, rollback); its last good version (if any) serves.",
		[]string{"file", "reason"}, nil)
	fileSignedDesc = prometheus.NewDesc(namespace+"_list_file_signed_timestamp_seconds",
		"Unix time the version of each list file in service was signed (with --trusted-key).", []string{"file"}, nil)
	heldDesc = prometheus.NewDesc(namespace+"_list_held",
		"1 while the version of a list file on disk is not in service: state held (the shrink guard; sinkhole reload --accept applies it) or settling (being written). Its last good version serves.",
		[]string{"file", "state"}, nil)
	unloadedDesc = prometheus.NewDesc(namespace+"_list_file_unloaded",
		"1 for a list file with no version in service (broken, refused or unfinished since start).",
		[]string{"file"}, nil)
)

func newListMetrics() *listMetrics {
	l := &listMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "list_reloads_total",
			Help: "List reloads by result: success, file_errors (some files failed and kept their last good version), failure (nothing reloaded).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "list_last_reload_timestamp_seconds",
			Help: "Unix time the last list reload finished.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "list_last_reload_success",
			Help: "1 when the last list reload loaded every file, else 0.",
		}),
		lastDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "list_last_reload_duration_seconds",
			Help: "How long the last list reload took.",
		}),
	}
	for _, r := range []string{ReloadSuccess, ReloadFileErrors, ReloadFailure} {
		l.reloads.WithLabelValues(r)
	}
	return l
}

func (l *listMetrics) register(reg *prometheus.Registry) {
	reg.MustRegister(l.reloads, l.lastReload, l.lastSuccess, l.lastDuration, l)
}

// Describe implements prometheus.Collector for the snapshot gauges.
func (l *listMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- generationDesc
	ch <- rulesDesc
	ch <- fileErrorsDesc
	ch <- fileRefusedDesc
	ch <- fileSignedDesc
	ch <- heldDesc
	ch <- unloadedDesc
}

// Collect implements prometheus.Collector: it reads the snapshot of the
// last reload, so one scrape sees one consistent generation.
func (l *listMetrics) Collect(ch chan<- prometheus.Metric) {
	snap := l.snap.Load()
	if snap == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(snap.Generation))
	for _, f := range snap.Files {
		ch <- prometheus.MustNewConstMetric(rulesDesc, prometheus.GaugeValue, float64(f.Rules()), f.Name)
		ch <- prometheus.MustNewConstMetric(fileErrorsDesc, prometheus.GaugeValue, float64(len(f.Errors)), f.Name)
		if f.Refused != nil {
			ch <- prometheus.MustNewConstMetric(fileRefusedDesc, prometheus.GaugeValue, 1, f.Name, f.Refused.Reason)
		}
		if f.Signature != nil && !f.Signature.SignedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(fileSignedDesc, prometheus.GaugeValue, float64(f.Signature.SignedAt.Unix()), f.Name)
		}
		if w := f.Withheld; w != nil {
			ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, 1, f.Name, w.State)
		}
		unloaded := 0.0
		if f.SHA256 == "" {
			unloaded = 1
		}
		ch <- prometheus.MustNewConstMetric(unloadedDesc, prometheus.GaugeValue, unloaded, f.Name)
	}
}

// ReloadResult classifies a reload report.
func ReloadResult(rep *blocklist.ReloadReport) string {
	switch {
	case rep.Error != "":
		return ReloadFailure
	case rep.Failed():
		return ReloadFileErrors
	}
	return ReloadSuccess
}

// ObserveReload records a list reload. It has the signature of
// blocklist.Store.OnReload's listener.
func (m *Metrics) ObserveReload(snap *blocklist.Snapshot, rep *blocklist.ReloadReport) {
	l := m.lists
	res := ReloadResult(rep)
	l.snap.Store(snap)
	l.reloads.WithLabelValues(res).Inc()
	l.lastReload.Set(float64(time.Now().UnixNano()) / 1e9)
	l.lastDuration.Set(rep.Duration.Seconds())
	if res == ReloadSuccess {
		l.lastSuccess.Set(1)
	} else {
		l.lastSuccess.Set(0)
	}
}
