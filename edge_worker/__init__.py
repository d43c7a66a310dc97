"""The hefl edge worker: local training, validation hooks, update codec, client."""
