"""Bad input, security and schema conformance, against the real API and worker processes."""
