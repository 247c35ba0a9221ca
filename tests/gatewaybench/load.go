package main

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// stats are the latencies of one phase.
type stats struct {
	n, errors int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	firstErr  error
}

func (s stats) throughput() float64 { return float64(s.n-s.errors) / s.elapsed.Seconds() }

// p is the q-th percentile (nearest rank); p(100) is the maximum.
func (s stats) p(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(q/100*float64(len(s.lat))+0.5) - 1
	return s.lat[max(0, min(i, len(s.lat)-1))]
}

// drive issues o.rate requests a second for o.duration, each at its
// scheduled time or as soon as one of o.conc workers is free, and records
// each request's latency. More than 1% errors fail the phase.
func drive(o options, op func(i int) error) (stats, error) {
	total := int(float64(o.rate) * o.duration.Seconds())
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
				err := op(i)
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					st.errors++
					if st.firstErr == nil {
						st.firstErr = err
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	begin := time.Now()
	interval := time.Second / time.Duration(o.rate)
	for i := 0; i < total; i++ {
		if wait := time.Until(begin.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		tickets <- i
	}
	close(tickets)
	wg.Wait()
	st.elapsed = time.Since(begin)
	slices.Sort(lat)
	st.lat = lat
	if st.errors*100 > total {
		return st, fmt.Errorf("%d of %d requests failed, first: %w", st.errors, total, st.firstErr)
	}
	if len(lat) == 0 {
		return st, errors.New("no request succeeded")
	}
	return st, nil
}
