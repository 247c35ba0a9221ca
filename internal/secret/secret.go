// Package secret holds the shapes of the credentials authpool scrubs from
// what it writes, so that the log redactor (pkg/telemetry) and the backends'
// error excerpts (pkg/backend) recognise the same ones. It imports nothing of
// authpool: both may use it.
package secret

import "regexp"

// AnthropicKey matches an Anthropic API key or a `claude setup-token` OAuth
// token (sk-ant-api03-…, sk-ant-oat01-…), wherever it sits in a string.
var AnthropicKey = regexp.MustCompile(`sk-ant-[A-Za-z0-9_-]+`)
