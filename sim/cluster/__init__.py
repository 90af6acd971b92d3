"""Many devices: system specs (topology), parallel workloads, and their simulation."""
