// Go's side of weir's benchmarks, measured the same way as the criterion
// benches: errgroup spawn+wait of 200,000 no-op tasks (unlimited and
// SetLimit(8)), a 3-stage channel pipeline of 2,000,000 ints at capacity 1
// and 64, and the time from a failure to Wait returning with 10,000
// goroutines blocked. Prints one line per figure.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"
)

const tasks = 200_000
const items = 2_000_000

func spawnWait(limit int) time.Duration {
	start := time.Now()
	var g errgroup.Group
	if limit > 0 {
		g.SetLimit(limit)
	}
	for i := 0; i < tasks; i++ {
		g.Go(func() error { return nil })
	}
	if err := g.Wait(); err != nil {
		panic(err)
	}
	return time.Since(start)
}

func pipeline(capacity int) time.Duration {
	start := time.Now()
	g, ctx := errgroup.WithContext(context.Background())
	a := make(chan uint64, capacity)
	b := make(chan uint64, capacity)
	g.Go(func() error {
		defer close(a)
		for n := uint64(0); n < items; n++ {
			select {
			case a <- n:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	g.Go(func() error {
		defer close(b)
		for n := range a {
			select {
			case b <- n * 2:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	var sum uint64
	g.Go(func() error {
		for n := range b {
			sum += n
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		panic(err)
	}
	if sum != items*(items-1) {
		panic("wrong sum")
	}
	return time.Since(start)
}

func cancelLatency() time.Duration {
	g, ctx := errgroup.WithContext(context.Background())
	for i := 0; i < 10_000; i++ {
		g.Go(func() error { <-ctx.Done(); return ctx.Err() })
	}
	time.Sleep(time.Millisecond)
	failed := make(chan time.Time, 1)
	g.Go(func() error { failed <- time.Now(); return errors.New("boom") })
	g.Wait()
	return time.Since(<-failed)
}

func best(runs int, f func() time.Duration) time.Duration {
	all := make([]time.Duration, runs)
	for i := range all {
		all[i] = f()
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[runs/2]
}

func main() {
	runs := 15
	if len(os.Args) > 1 {
		fmt.Sscan(os.Args[1], &runs)
	}
	fmt.Printf("go errgroup spawn+wait unlimited: %.0f ns/task\n", float64(best(runs, func() time.Duration { return spawnWait(0) }).Nanoseconds())/tasks)
	fmt.Printf("go errgroup spawn+wait limit 8: %.0f ns/task\n", float64(best(runs, func() time.Duration { return spawnWait(8) }).Nanoseconds())/tasks)
	for _, c := range []int{1, 64} {
		d := best(runs/3+1, func() time.Duration { return pipeline(c) })
		fmt.Printf("go pipeline cap %d: %.2f M items/s\n", c, items/d.Seconds()/1e6)
	}
	lat := make([]time.Duration, 50)
	for i := range lat {
		lat[i] = cancelLatency()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("go cancel latency 10k blocked: p50 %v p99 %v\n", lat[25], lat[49])
}
