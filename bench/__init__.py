"""Benchmarks of the operator on the real local control plane (`make bench`, see __main__)."""
