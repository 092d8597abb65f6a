"""Framework-free training loops: the same code runs in one process or in each Ray worker."""
