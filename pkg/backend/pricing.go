package backend

import "strings"

// price is a model family's list price in USD per million tokens.
type price struct{ input, output float64 }

// prices are Anthropic's list prices per model family, first match wins.
// They are an estimate for recording fallback usage next to the CLI's
// reported costs, not a bill: update them when the price list changes.
var prices = []struct {
	match string
	p     price
}{
	{"opus-4-5", price{5, 25}},
	{"opus", price{15, 75}},
	{"sonnet", price{3, 15}},
	{"3-5-haiku", price{0.80, 4}},
	{"3-haiku", price{0.25, 1.25}},
	{"haiku", price{1, 5}},
}

// knownModels are the full model names the price list above covers, listed
// by GET /v1/models next to the aliases.
var knownModels = []string{
	"claude-opus-4-5", "claude-opus-4-1", "claude-opus-4-0", "claude-sonnet-4-5", "claude-sonnet-4-0",
	"claude-3-7-sonnet-latest", "claude-haiku-4-5", "claude-3-5-haiku-latest", "claude-3-haiku-20240307",
}

// KnownModels returns the claude-* model names the price list knows.
func KnownModels() []string { return append([]string(nil), knownModels...) }

// Prompt-cache multipliers of the input price (5-minute cache writes).
const (
	cacheWriteFactor = 1.25
	cacheReadFactor  = 0.10
)

// EstimateCostUSD estimates the cost of usage u on model from list prices
// (opus, sonnet and haiku families; an unknown model is priced as sonnet).
// Cache writes cost 1.25× and cache reads 0.1× the input price.
func EstimateCostUSD(model string, u Usage) float64 {
	p := prices[2].p // sonnet
	m := strings.ToLower(model)
	for _, e := range prices {
		if strings.Contains(m, e.match) {
			p = e.p
			break
		}
	}
	in := float64(u.InputTokens) + cacheWriteFactor*float64(u.CacheCreationInputTokens) +
		cacheReadFactor*float64(u.CacheReadInputTokens)
	return (in*p.input + float64(u.OutputTokens)*p.output) / 1e6
}
