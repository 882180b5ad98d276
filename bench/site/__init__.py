"""A minimal Django project for the benchmarks; ``DMP_BENCH_*`` variables pick the mode."""
