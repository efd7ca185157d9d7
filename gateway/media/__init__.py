"""Media parsers: what the gateway must know of an uploaded file without decoding it."""
