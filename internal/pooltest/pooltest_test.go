package pooltest

import (
	"testing"

	"github.com/authpool/authpool/pkg/pool"
)

// The configs the tests build are ones the pool accepts.
func TestConfigIsValid(t *testing.T) {
	cfg := WithRules(Config(3, 100, 5), 0.5, 0.8)
	// New fills in the defaults, as loading a file does.
	if err := pool.New(nil, cfg, pool.Options{}).Config().Validate(); err != nil {
		t.Fatal(err)
	}
}
