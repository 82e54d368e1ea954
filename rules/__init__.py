"""Decisions: the allocator (pure), the load-cap loop around it, schedules and alarms. Rules read the process
image and emit commands through the one door; they never import a driver."""
