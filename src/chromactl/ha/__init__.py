"""High availability: which pod of a release is the primary (leader election on a Lease)."""
