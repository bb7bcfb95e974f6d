"""Durable workflows: definitions, expressions, the engine."""
