"""gRPC servicers: validate shapes, call a core, convert the answer. No rules, no SQL."""
