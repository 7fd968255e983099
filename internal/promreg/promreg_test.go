package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterSharesAndReportsClashes(t *testing.T) {
	t.Parallel()
	r := prometheus.NewRegistry()
	a, err1 := Register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	b, err2 := Register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	if err1 != nil || err2 != nil || a != b {
		t.Fatalf("a second registration did not return the first collector: %v %v", err1, err2)
	}
	if _, err := Register(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other help"})); err == nil {
		t.Fatal("a clashing registration was not reported")
	}
}
