package pgkv

// Name names the engine in the vault's messages (kv.Named).
func (e *Engine) Name() string { return "postgres" }
