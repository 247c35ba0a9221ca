package main

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// stats are the latencies of one path at one rate.
type stats struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	outside   []time.Duration // sorted: latency minus the server's Server-Timing total (gateway only)
	firstErr  error
}

func (s stats) throughput() float64 { return float64(s.n-s.errors) / s.elapsed.Seconds() }

// p is the q-th percentile (nearest rank); p(100) is the maximum.
func (s stats) p(q float64) time.Duration { return pct(s.lat, q) }

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q/100*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// merge adds the requests of b to s.
func (s stats) merge(b stats) stats {
	s.n += b.n
	s.errors += b.errors
	s.elapsed += b.elapsed
	s.lat = append(s.lat, b.lat...)
	s.outside = append(s.outside, b.outside...)
	if s.firstErr == nil {
		s.firstErr = b.firstErr
	}
	slices.Sort(s.lat)
	slices.Sort(s.outside)
	return s
}

// op runs request i; server is the server's own total from its
// Server-Timing header (0 when unknown).
type op func(i int) (server time.Duration, err error)

// drive issues o.rate requests a second for d, each at its scheduled time or
// as soon as one of o.conc workers is free, numbering them from first, and
// records each request's latency.
func drive(o options, rate int, d time.Duration, first int, run op) stats {
	total := int(float64(rate) * d.Seconds())
	tickets := make(chan int, total)
	var (
		mu  sync.Mutex
		st  = stats{n: total}
		wg  sync.WaitGroup
		lat = make([]time.Duration, 0, total)
	)
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tickets {
				start := time.Now()
				server, err := run(i)
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					st.errors++
					if st.firstErr == nil {
						st.firstErr = err
					}
				} else {
					lat = append(lat, d)
					if server > 0 {
						st.outside = append(st.outside, d-server)
					}
				}
				mu.Unlock()
			}
		}()
	}
	begin := time.Now()
	interval := time.Second / time.Duration(rate)
	for i := 0; i < total; i++ {
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		tickets <- first + i
	}
	close(tickets)
	wg.Wait()
	st.elapsed = time.Since(begin)
	slices.Sort(lat)
	st.lat = lat
	slices.Sort(st.outside)
	return st
}

// check fails a phase with more than 1% errors or no success.
func (s stats) check() error {
	if s.errors*100 > s.n {
		return fmt.Errorf("%d of %d requests failed, first: %w", s.errors, s.n, s.firstErr)
	}
	if len(s.lat) == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// compare drives each path at rate for o.duration, taking turns in rounds
// of one second so that whatever else the machine does falls on all alike.
func compare(o options, rate int, paths []op) ([]stats, error) {
	out := make([]stats, len(paths))
	rounds := max(1, int(o.duration/time.Second))
	per := o.duration / time.Duration(rounds)
	next := 0
	for r := 0; r < rounds; r++ {
		for i, p := range paths {
			out[i] = out[i].merge(drive(o, rate, per, next, p))
		}
		next += int(float64(rate) * per.Seconds())
	}
	for i, s := range out {
		if err := s.check(); err != nil {
			return out, fmt.Errorf("path %d: %w", i, err)
		}
	}
	return out, nil
}
