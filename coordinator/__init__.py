"""The hefl coordinator: rounds, windows, aggregation, decryption quorum, ledger, metrics."""
