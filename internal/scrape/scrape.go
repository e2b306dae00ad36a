// Package scrape reads Prometheus metrics from a text exposition (an HTTP
// /metrics endpoint or a handler) into a map, so tests can assert exact
// values of the series a running server exports.
package scrape

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics maps series keys to values. A key is the metric name followed by
// its labels sorted by name, as in `sinkhole_queries_total{proto="udp",result="answered",type="A"}`,
// or the bare name for a series without labels. Histograms add the
// _count, _sum and _bucket{...,le="..."} series.
type Metrics struct {
	Values map[string]float64
	// Families holds every metric family name with its type ("counter",
	// "gauge", "histogram", "summary", "untyped").
	Families map[string]string
}

// Get returns the value of name with labels given as name, value pairs;
// the second result is false when the series is absent.
func (m *Metrics) Get(name string, labels ...string) (float64, bool) {
	v, ok := m.Values[Key(name, labels...)]
	return v, ok
}

// Value returns the value of a series, 0 when it is absent.
func (m *Metrics) Value(name string, labels ...string) float64 {
	v, _ := m.Get(name, labels...)
	return v
}

// Key builds a series key from a name and label name, value pairs.
func Key(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	slices.Sort(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// URL fetches and parses a /metrics endpoint.
func URL(url string) (*Metrics, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads a text exposition.
func Parse(r io.Reader) (*Metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	m := &Metrics{Values: map[string]float64{}, Families: map[string]string{}}
	for name, f := range fams {
		m.Families[name] = strings.ToLower(f.GetType().String())
		for _, s := range f.Metric {
			var labels []string
			for _, l := range s.Label {
				labels = append(labels, l.GetName(), l.GetValue())
			}
			m.add(name, f.GetType(), s, labels)
		}
	}
	return m, nil
}

func (m *Metrics) add(name string, t dto.MetricType, s *dto.Metric, labels []string) {
	switch t {
	case dto.MetricType_COUNTER:
		m.Values[Key(name, labels...)] = s.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		m.Values[Key(name, labels...)] = s.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		h := s.GetHistogram()
		m.Values[Key(name+"_count", labels...)] = float64(h.GetSampleCount())
		m.Values[Key(name+"_sum", labels...)] = h.GetSampleSum()
		for _, b := range h.Bucket {
			le := model.FloatString(b.GetUpperBound()).String()
			m.Values[Key(name+"_bucket", append(slices.Clone(labels), "le", le)...)] = float64(b.GetCumulativeCount())
		}
	case dto.MetricType_SUMMARY:
		sm := s.GetSummary()
		m.Values[Key(name+"_count", labels...)] = float64(sm.GetSampleCount())
		m.Values[Key(name+"_sum", labels...)] = sm.GetSampleSum()
	default:
		m.Values[Key(name, labels...)] = s.GetUntyped().GetValue()
	}
}
