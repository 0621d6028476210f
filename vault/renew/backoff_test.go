package renew

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithJitter(t *testing.T) {
	m := New(Config{MinBackoff: time.Second, MaxBackoff: time.Minute})
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 10: time.Minute} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := m.backoff(n)
			if d < want/2 || d > want {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took only %d distinct values: no jitter", n, len(seen))
		}
	}
}
