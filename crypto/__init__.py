"""Cryptography of hefl: identities, sealed boxes, secret sharing, the update codec and profiles.

This package is the only place that imports ``openfhe``; the rest of hefl works with the typed
facades defined here.
"""
