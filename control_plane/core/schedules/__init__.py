"""Schedules: workflow processes started on a calendar or at an interval, by the leader only."""
