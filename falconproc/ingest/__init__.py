"""The upload path: admission (size, rate limits, memory, queue, disk), one streaming
pass through the native probe, type refinement and the store's atomic commit."""
