"""What every command shares: its exit codes."""

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
