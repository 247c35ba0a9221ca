package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// ParseMetrics reads a Prometheus text exposition into series → value, a
// series written as the exposition writes it: name{label="v",…} in label
// order. Comments and blank lines are skipped.
func ParseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("testutil: metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("testutil: metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Scrape GETs url and parses its exposition, failing the test on any error.
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	series, err := ParseMetrics(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return series
}

// Sum adds the series named key: exactly that series when key has labels,
// else every series of that name.
func Sum(series map[string]float64, key string) float64 {
	if strings.Contains(key, "{") {
		return series[key]
	}
	var s float64
	for k, v := range series {
		if k == key || strings.HasPrefix(k, key+"{") {
			s += v
		}
	}
	return s
}
