"""gRPC servicers: thin layers that authenticate, call domain code and map its errors."""
