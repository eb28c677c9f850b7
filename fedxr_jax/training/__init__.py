"""Host side: the XR problem, the run loop, checkpoints, logging."""
