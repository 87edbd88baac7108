"""Keys and DSSE envelopes."""
