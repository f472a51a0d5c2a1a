"""`make bench`: entrasync against the sandbox, beside the I/O floor and a naive baseline."""
