"""The test harness: what the test folders share (see each module)."""
