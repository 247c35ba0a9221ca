// Package config holds the example configuration files and the JSON Schema
// of the pool config, config/auth-pool.schema.json. The schema file is the
// one source: editors read it from here, and pkg/pool validates every config
// with the copy embedded below.
package config

import _ "embed"

// PoolSchema is config/auth-pool.schema.json (JSON Schema draft 2020-12).
//
//go:embed auth-pool.schema.json
var PoolSchema []byte

// PoolSchemaName is the file name of PoolSchema, the URL it is compiled
// under and the name its errors carry.
const PoolSchemaName = "auth-pool.schema.json"
