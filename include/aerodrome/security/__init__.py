"""Integrity and protection of what the platform stores: artifact digests (signing, encryption follow)."""
