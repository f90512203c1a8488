"""Integrity and accountability: artifact digests, model signatures (Ed25519), the hash-chained audit trail."""
