"""The gRPC face of the bank."""
