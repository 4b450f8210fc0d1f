"""The chain of trust (docs/trust.md): Secure Boot keys, the signed loader that pins its
config, and what `inspect` shows of them."""
