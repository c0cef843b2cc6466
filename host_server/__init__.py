"""Host tail server (asyncio): transports, per-method assemblers, tail runners, sinks."""
