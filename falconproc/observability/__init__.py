"""Health, Prometheus metrics, memory readings (psutil, cgroup v2) and the memory governor
that decides from them."""
